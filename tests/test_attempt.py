"""One attempt in a real bubblewrap sandbox: isolation, time limit, crashes, validator, snapshots."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from hpc_mle import grading, paths, runner, watch

AGENTS = Path(__file__).parent / "agents"
CID = "mini-churn"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def scaffold(tmp_path: Path, script: str) -> str:
    """A scaffold YAML for one of the test agents in tests/agents/."""
    path = tmp_path / f"{Path(script).stem}.yaml"
    path.write_text(yaml.safe_dump({"name": Path(script).stem, "agent_files": [str(AGENTS / script)],
                                    "command": ["python3", f"/home/agent/{script}"]}))
    return str(path)


def attempt(tmp_path, mini_data, scaffold_name, **kw) -> tuple[dict, Path]:
    out = tmp_path / "attempt"
    cfg = runner.AttemptConfig(competition_id=CID, scaffold=scaffold_name, out=out, data_dir=mini_data,
                               telemetry_interval_s=0.5, **{"time_limit_s": 60, "grace_s": 2, **kw})
    return runner.run_attempt(cfg), out


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_dummy_cannot_reach_the_answers_and_sees_no_secrets(tmp_path, mini_data, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    private = paths.private_dir(CID, mini_data)
    status, out = attempt(tmp_path, mini_data, "dummy", agent_args=("--probe", str(private),
                                                                   "--probe", str(private / "test.csv")))
    assert status["state"] == "done", status
    record = json.loads((out / "logs" / "dummy.json").read_text())
    assert not record["private_readable"]
    assert {p["path"] for p in record["probes"]} >= {str(private), str(private / "test.csv")}
    assert record["suspicious_env"] == [] and not record["data_writable"]
    assert record["validator"]["exit_code"] == 0 and "valid" in record["validator"]["output"]

    answers = (private / "test.csv").read_bytes()
    for path in files_under(out):
        content = path.read_bytes()
        assert answers not in content, f"{path} holds the private answers"
        assert b"sk-test-secret-value" not in content, f"{path} holds a secret"
    config = json.loads((out / "config.json").read_text())
    assert "OPENAI_API_KEY" not in config["env_keys"] and not any(k.startswith("SLURM_") for k in config["env_keys"])
    assert config["competition"]["spec_version"] >= 1 and config["code_version"]
    assert grading.grade_submission(out / "submission" / "submission.csv", CID, mini_data).valid_submission


def test_environment_is_an_allow_list_and_the_validator_answers_on_localhost(tmp_path, mini_data, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    status, out = attempt(tmp_path, mini_data, scaffold(tmp_path, "inspect_env.py"),
                          agent_args=(str(mini_data), str(Path.home() / ".cache")))
    assert status["state"] == "done", status
    seen = json.loads((out / "logs" / "inspect.json").read_text())
    env = seen["env"]
    assert not any(k.startswith("SLURM_") or "SECRET" in k or k == "PYTHONPATH" for k in env)
    assert env["PYTHONNOUSERSITE"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["COMPETITION_ID"] == CID and env["TIME_LIMIT_SECS"] == "60" and env["HARDWARE"] == "a CPU"
    for key in ("SUBMISSION_DIR", "LOGS_DIR", "CODE_DIR", "AGENT_DIR"):
        assert env[key].startswith("/home/")
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["validator_reply"] == {"result": "Submission is valid.", "valid": True}
    assert sorted(seen["home"]) == ["agent", "code", "data", "instructions.txt", "instructions_obfuscated.txt",
                                    "logs", "submission", "validate_submission.sh"]
    assert seen["exists"] == {str(mini_data): False, str(Path.home() / ".cache"): False}


def test_overrun_is_stopped_with_every_child(tmp_path, mini_data):
    marker = f"hpc-mle-test-{time.time_ns()}"
    t0 = time.monotonic()
    status, out = attempt(tmp_path, mini_data, scaffold(tmp_path, "overrun.py"), time_limit_s=3, grace_s=1,
                          agent_args=(marker,))
    assert time.monotonic() - t0 < 30
    assert status["state"] == "timeout" and "time limit" in status["reason"]
    assert 3 <= status["agent_elapsed_s"] < 10
    survivors = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert survivors == [], f"left running: {[p.info['cmdline'] for p in survivors]}"
    events = [json.loads(line)["event"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[:2] == ["start", "agent-started"] and "stopping" in events and events[-1] == "end"
    assert (out / "submission" / "submission.csv").is_file()  # what it wrote before the limit is kept
    assert "working forever" in (out / "agent.log").read_text()


def test_orphans_of_the_agent_are_killed_but_not_other_daemons_of_the_process(tmp_path, mini_data):
    """A runner inside a long-lived process (local sweeps, pytest) kills only its own agent's orphans.

    The bystander stands for a daemon someone else started from the same process (the dev Slurm cluster
    brought up by a test fixture): it is re-parented to us while we are a subreaper, but is not the agent's.
    """
    marker, bystander_marker = (f"hpc-mle-test-{kind}-{time.time_ns()}" for kind in ("orphan", "bystander"))
    watch.set_subreaper(True)
    try:
        sleeper = [sys.executable, "-c", "import time; time.sleep(1000)", bystander_marker]
        starter = f"import subprocess; subprocess.Popen({sleeper!r}, start_new_session=True)"
        subprocess.run([sys.executable, "-c", starter], check=True)
        status, _ = attempt(tmp_path, mini_data, scaffold(tmp_path, "orphaner.py"), sandbox="none",
                            agent_args=(marker,))
        assert status["state"] == "done"

        def running(mark: str) -> list[psutil.Process]:
            return [p for p in psutil.process_iter(["cmdline"]) if mark in " ".join(p.info["cmdline"] or [])]

        assert running(marker) == [], "the agent's orphan was left running"
        assert len(running(bystander_marker)) == 1, "a process that is not the agent's was killed"
    finally:
        watch.set_subreaper(False)
        for p in psutil.process_iter(["cmdline"]):
            if bystander_marker in " ".join(p.info["cmdline"] or []):
                p.kill()


def test_a_job_signal_that_reaches_the_agent_first_is_not_blamed_on_the_agent(tmp_path, mini_data):
    """scancel signals every process of the job at once; bwrap reports its child's death as 128+15."""
    marker = f"hpc-mle-test-{time.time_ns()}"
    events_path = tmp_path / "attempt" / "events.jsonl"

    def scancel_like() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "agent-started" not in _read(events_path):
            time.sleep(0.1)
        time.sleep(1.0)
        for bwrap in (p for p in psutil.Process().children() if p.name() == "bwrap"):
            for p in bwrap.children(recursive=True):  # the sandboxed processes die first ...
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)  # ... and the runner's own handler runs a moment later

    sender = threading.Thread(target=scancel_like)
    before = signal.signal(signal.SIGTERM, lambda *_: None)  # a late signal must not stop pytest
    sender.start()
    try:
        status, _ = attempt(tmp_path, mini_data, scaffold(tmp_path, "overrun.py"), sandbox="bwrap", grace_s=1,
                            agent_args=(marker,))
    finally:
        sender.join()
        signal.signal(signal.SIGTERM, before)
    assert status["state"] == "preempted" and "SIGTERM" in status["reason"], status
    assert status["exit_code"] == 128 + signal.SIGTERM


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_crash_leaves_failed_status_with_exit_code_and_log_tail(tmp_path, mini_data):
    status, out = attempt(tmp_path, mini_data, scaffold(tmp_path, "crash.py"))
    assert status["state"] == "failed" and status["exit_code"] == 3
    assert status["reason"] == "agent exited with code 3"
    assert "model exploded" in status["log_tail"] and "about to fail" in status["log_tail"]
    assert json.loads((out / "status.json").read_text())["state"] == "failed"


def test_snapshots_follow_the_submission(tmp_path, mini_data):
    status, out = attempt(tmp_path, mini_data, scaffold(tmp_path, "slow_writer.py"), snapshot_interval_s=0.3)
    assert status["state"] == "done"
    snaps = sorted(out.joinpath("snapshots").glob("*.csv"), key=lambda p: int(p.stem))
    assert len(snaps) >= 2 and status["snapshots"] == len(snaps)
    assert snaps[-1].read_bytes() == (out / "submission" / "submission.csv").read_bytes()
    assert len({p.read_bytes() for p in snaps}) == len(snaps)  # only changes are kept
    rows = (out / "telemetry.csv").read_text().splitlines()
    assert rows[0].startswith("time,elapsed_s,cpu_percent,rss_mib,processes") and len(rows) >= 3
    assert status["telemetry"]["samples"] >= 2 and status["telemetry"]["rss_mib_max"] > 0


def test_a_finished_attempt_is_not_run_again_and_a_requeued_one_continues(tmp_path, mini_data):
    status, out = attempt(tmp_path, mini_data, "dummy")
    again, _ = attempt(tmp_path, mini_data, "dummy")
    assert again == status and again["starts"] == 1

    # A requeue after preemption: the attempt had used 50 of its 60 s; it restarts with 10 s left.
    state = json.loads((out / "status.json").read_text())
    state.update(state="preempted", agent_elapsed_s=50.0)
    (out / "status.json").write_text(json.dumps(state))
    resumed, _ = attempt(tmp_path, mini_data, scaffold(tmp_path, "inspect_env.py"))
    assert resumed["state"] == "done" and resumed["starts"] == 2
    env = json.loads((out / "logs" / "inspect.json").read_text())["env"]
    assert env["TIME_LIMIT_SECS"] == "10"
    assert 50 <= resumed["agent_elapsed_s"] < 60


def test_no_budget_left_is_a_timeout_without_starting(tmp_path, mini_data, monkeypatch):
    out = tmp_path / "attempt"
    out.mkdir()
    (out / "status.json").write_text(json.dumps({"state": "preempted", "agent_elapsed_s": 61, "starts": 1}))
    # A temp dir of its own (short, for the socket paths): in the shared /tmp, attempts of tests running in
    # another xdist worker come and go meanwhile.
    temp = Path(tempfile.mkdtemp(prefix="t-"))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    status, _ = attempt(tmp_path, mini_data, "dummy")
    assert status["state"] == "timeout" and status["starts"] == 2 and status["reason"] == "no time budget left"
    assert not list(temp.iterdir())  # the socket and scratch folders are gone
    temp.rmdir()


def test_unsandboxed_run_is_marked(tmp_path, mini_data):
    status, out = attempt(tmp_path, mini_data, "dummy", sandbox="none")
    assert status["state"] == "done" and status["unsandboxed"]
    assert json.loads((out / "config.json").read_text())["unsandboxed"] is True
    assert (out / "submission" / "submission.csv").is_file()


def test_unprepared_competition_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(runner.AttemptError, match="hpc-mle prepare -c mini-churn"):
        runner.run_attempt(runner.AttemptConfig(competition_id=CID, scaffold="dummy", out=tmp_path / "a",
                                                data_dir=tmp_path / "empty"))


def test_obfuscate_gives_the_obfuscated_description_or_refuses(tmp_path, mini_data, monkeypatch):
    """--obfuscate (the contamination study) hides the identifying description too, never falling back to it."""
    root = tmp_path / "competitions"
    shutil.copytree(paths.competitions_root() / CID, root / CID)
    (root / CID / "description_obfuscated.md").unlink(missing_ok=True)  # a site's competition without one
    monkeypatch.setenv("HPC_MLE_COMPETITIONS", str(root))
    with pytest.raises(runner.AttemptError, match="no obfuscated description.*description_obfuscated.md"):
        attempt(tmp_path, mini_data, scaffold(tmp_path, "read_description.py"), obfuscate=True)
    (root / CID / "description_obfuscated.md").write_text("Predict which customers leave a service.\n")
    status, out = attempt(tmp_path, mini_data, scaffold(tmp_path, "read_description.py"), obfuscate=True)
    assert status["state"] == "done", status
    assert (out / "logs" / "description.md").read_text() == "Predict which customers leave a service.\n"
    assert (out / "logs" / "instructions.txt").read_text() == (out / "harness" / "instructions_obfuscated.txt").read_text()
    assert paths.public_dir(CID, mini_data).joinpath("description.md").read_text() != "Predict which customers leave a service.\n"
