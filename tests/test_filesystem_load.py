"""Gentle on shared filesystems, and a stop that fits Slurm's KillWait (issue 17, items 5 and 7).

Status writes per attempt-hour, the image digest once per launch, data outside $HOME under Slurm, the
whole stop sequence within its bound against an agent that ignores TERM, and the state when requeue is off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from omegaconf import OmegaConf

from hpc_mle import containers, paths, preflight, runner, watch
from hpc_mle.config import ClusterConf

AGENTS = Path(__file__).parent / "agents"


def _alive(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


# ---------------------------------------------------------------- the stop sequence


def test_stop_tree_keeps_to_its_bound_when_term_is_ignored():
    marker = f"hpc-mle-stubborn-{time.time_ns()}"
    code = f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)  # {marker}"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    time.sleep(0.3)  # the handler is installed
    t0 = time.monotonic()
    killed = watch.stop_tree(proc, grace_s=30, bound_s=1.5)
    took = time.monotonic() - t0
    assert killed == 1 and proc.returncode == -signal.SIGKILL
    assert 0.8 < took < 1.8, took  # the grace shrank to fit KILL's wait in the bound; 30 s was not waited
    assert _alive(marker) == []


def _scaffold(tmp_path: Path) -> str:
    path = tmp_path / "stubborn.yaml"
    path.write_text(yaml.safe_dump({"name": "stubborn", "agent_files": [str(AGENTS / "stubborn.py")],
                                    "command": ["python3", "/home/agent/stubborn.py"]}))
    return str(path)


@pytest.fixture(scope="module")
def preempted(tmp_path_factory, mini_data):
    """One attempt whose agent ignores TERM, preempted by SIGTERM (as Slurm without a warning signal does)
    with requeue off; each write of status.json recorded. Sandbox none, so the KILL path is taken: under
    bwrap the TERMed sandbox's PID namespace ends with it, and no process is left to KILL."""
    tmp = tmp_path_factory.mktemp("stop")
    marker = f"hpc-mle-stubborn-{time.time_ns()}"
    out = tmp / "sweep" / "attempts" / "a1"
    writes: list[tuple[float, str, bool]] = []
    real = runner.atomic_write_json

    def recording(path, obj, *args, durable: bool = True, **kw):
        writes.append((time.monotonic(), Path(path).name, durable))
        return real(path, obj, *args, durable=durable, **kw)

    signalled: list[float] = []

    def slurm_like() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "agent-started" not in _text(out / "events.jsonl"):
            time.sleep(0.05)
        time.sleep(2.6)
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)

    cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold=_scaffold(tmp), out=out, data_dir=mini_data,
                               sandbox="none", time_limit_s=120, grace_s=30, stop_bound_s=5,
                               status_interval_s=1.0, telemetry_interval_s=0.5, requeue=False,
                               agent_args=(marker,))
    before = signal.signal(signal.SIGTERM, lambda *_: None)  # a late signal must not stop pytest
    runner.atomic_write_json = recording
    sender = threading.Thread(target=slurm_like)
    sender.start()
    try:
        status = runner.run_attempt(cfg)
        ended = time.monotonic()
    finally:
        runner.atomic_write_json = real
        sender.join()
        signal.signal(signal.SIGTERM, before)
    return {"status": status, "writes": writes, "took": ended - signalled[0], "marker": marker, "out": out}


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_the_whole_stop_fits_its_bound_against_an_agent_that_ignores_term(preempted):
    status = preempted["status"]
    assert status["state"] == "preempted", status
    assert preempted["took"] < 5.0, preempted["took"]  # signal to final status.json, grace 30 s notwithstanding
    assert 0 < status["stop_s"] < 5.0
    assert status["exit_code"] == -signal.SIGKILL  # what ended it, not the 0 of a child already reaped
    assert _alive(preempted["marker"]) == [], "a process that ignored TERM outlived the stop"
    stopped = [json.loads(line) for line in _text(preempted["out"] / "events.jsonl").splitlines()
               if '"stopped"' in line]
    assert stopped[0]["killed_after_grace"] >= 2  # the agent and its child both needed KILL


def test_requeue_disabled_says_how_to_continue(preempted):
    reason = preempted["status"]["reason"]
    sweep = preempted["out"].parent.parent
    assert reason == f"stopped by SIGTERM; requeue disabled: `hpc-mle resume {sweep}` continues it"


def test_status_is_rewritten_per_interval_without_fsync_and_durably_at_state_changes(preempted):
    status_writes = [(t, durable) for t, name, durable in preempted["writes"] if name == "status.json"]
    periodic = [t for t, durable in status_writes if not durable]
    # about 2.6 s of agent time at a 1 s interval: two or three periodic writes (not one a second with fsync)
    assert 1 <= len(periodic) <= 3, status_writes
    assert all(b - a >= 0.95 for a, b in zip(periodic, periodic[1:], strict=False))
    durable = [d for _, d in status_writes if d]
    assert len(durable) == 3  # the start, the stop decision (before any KILL), the final status
    assert preempted["status"]["agent_elapsed_s"] >= 2.5


def test_a_sweep_passes_the_clusters_interval_and_bound_to_its_attempts():
    from hpc_mle import jobs

    assert jobs._cluster_timing({"status_interval_s": 45, "stop_bound_s": 15}) == {
        "status_interval_s": 45.0, "stop_bound_s": 15.0}
    assert jobs._cluster_timing({}) == {}  # a plan from before: the AttemptConfig defaults
    assert (runner.AttemptConfig.status_interval_s, runner.AttemptConfig.stop_bound_s) == (30.0, 20.0)
    assert ClusterConf.stop_bound_s < 30  # Slurm's default KillWait


# ---------------------------------------------------------------- the image digest, once per launch


def test_image_digest_is_computed_once_per_launch(tmp_path, monkeypatch):
    image = tmp_path / "agent.sif"
    image.write_bytes(b"SIF" * 1000)
    calls: list[Path] = []
    real = containers.file_digest
    monkeypatch.setattr(containers, "file_digest", lambda p: calls.append(p) or real(p))
    digests = containers.record_digests(tmp_path, {image})
    assert digests == {str(image.resolve()): real(image)} and len(calls) == 1
    containers.record_digests(tmp_path, {image})  # a resume: unchanged image, not read again
    assert len(calls) == 1
    recorded = containers.recorded_digest(tmp_path, image)
    assert recorded == real(image)
    cfg = runner.AttemptConfig(competition_id="x", scaffold="dummy", out=tmp_path, image=image,
                               image_digest=recorded)
    assert runner._image_digest(cfg, image) == recorded and len(calls) == 1  # the attempt reads no byte of it
    image.write_bytes(b"SIF" * 1001)  # rebuilt after the launch: the recorded digest no longer applies
    assert containers.recorded_digest(tmp_path, image) is None
    assert runner._image_digest(runner.AttemptConfig(competition_id="x", scaffold="dummy", out=tmp_path, image=image),
                                image) == real(image)


# ---------------------------------------------------------------- data outside $HOME under Slurm


def test_home_data_is_refused_under_slurm_naming_the_sites_storage(tmp_path, monkeypatch):
    env = {"HOME": str(tmp_path / "home"), "SCRATCH": "/scratch/u1", "PROJECT": "/proj/p7"}
    problem = paths.home_data_problem(tmp_path / "home" / ".cache" / "hpc-mle" / "data", env)
    assert problem and "$SCRATCH=/scratch/u1" in problem and "$PROJECT=/proj/p7" in problem
    assert "cluster.allow_home_data=true" in problem and "--allow-home-data" in problem
    assert paths.home_data_problem("/scratch/u1/data", env) is None
    bare = paths.home_data_problem(tmp_path / "home" / "d", {"HOME": str(tmp_path / "home")})
    assert "$SCRATCH, $WORK, $PROJECT" in bare

    section = preflight.Section("data", ["data folder"])
    home_data = str(tmp_path / "home" / "data")
    slurm = OmegaConf.merge(OmegaConf.structured(ClusterConf), {"name": "s", "kind": "slurm"})
    refused = preflight.home_data_check(section, home_data, slurm, env)
    assert len(refused.problems) == 1 and "$SCRATCH=/scratch/u1" in refused.problems[0].fix
    assert not any("HPC_MLE_VENVS" in line for line in refused.lines)  # venvs elsewhere: nothing to say
    monkeypatch.setenv("HPC_MLE_VENVS", str(tmp_path / "home" / "venvs"))
    named = preflight.home_data_check(section, home_data, slurm, env)
    assert any("HPC_MLE_VENVS=DIR" in line for line in named.lines) and len(named.problems) == 1  # named, not refused
    allowed = OmegaConf.merge(slurm, {"allow_home_data": True})
    local = OmegaConf.merge(slurm, {"kind": "local"})
    assert preflight.home_data_check(section, home_data, allowed, env).problems == []
    assert preflight.home_data_check(section, home_data, local, env).problems == []


def test_prepare_slurm_refuses_a_home_data_dir(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hpc_mle.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCRATCH", "/scratch/me")
    args = ["prepare", "-c", "spaceship-titanic", "--slurm", "--cluster", "slurm", "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "is under $HOME" in result.output and "$SCRATCH=/scratch/me" in result.output
