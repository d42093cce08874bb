"""`hpc-mle doctor` (hpc_mle/doctor.py): the site check, here, with network namespaces off, and on the dev cluster.

Network namespaces are turned off three ways: the machine-wide sysctl (where this container lets root write
it; restored in a `finally` within a second), a child user namespace whose own `user.max_net_namespaces` is 0
(the real kernel refusing the real bwrap, without touching the machine), and a fake `bwrap` on PATH that fails
as bwrap does without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from omegaconf import OmegaConf
from slurm_cluster import slurm_env  # noqa: F401  (fixture)

from hpc_mle import cli, doctor, preflight, runner

NET_SYSCTL = Path("/proc/sys/user/max_net_namespaces")
FALLBACK = "sandbox.network=true"
MESSAGES = ("bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted",
            "bwrap: Creating new namespace failed: Operation not permitted")
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed here")


def fake_bwrap(folder: Path, message: str) -> str:
    """A PATH whose `bwrap` works except with --unshare-net, where it fails with `message`; returns the PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "bwrap"
    script.write_text("#!/bin/sh\n"
                      'case " $* " in *" --version "*) echo "bubblewrap 0.8.0"; exit 0;; esac\n'
                      f'case " $* " in *" --unshare-net "*) echo "{message}" >&2; exit 1;; esac\n'
                      "exit 0\n")
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def doctor_json(args: list[str]) -> tuple[int, dict[str, dict]]:
    """`hpc-mle doctor --json ARGS` in this process: exit code and the checks by name."""
    result = CliRunner().invoke(cli.main, ["doctor", "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, {c["name"]: c for c in json.loads(result.output)}


# ---------------------------------------------------------------- this machine


@needs_bwrap
def test_doctor_here_reports_every_local_check_and_agrees_with_a_direct_probe():
    code, checks = doctor_json(["--no-slurm"])
    assert set(checks) == {f"{n} [here]" for n in ("user namespaces", "network namespaces", "bwrap", "apptainer")}
    assert all(c["state"] in doctor.STATES and c["seen"] for c in checks.values())
    direct = subprocess.run(["bwrap", "--unshare-user", "--unshare-net", "--ro-bind", "/", "/", "true"],
                            capture_output=True)
    net = checks["network namespaces [here]"]
    assert (net["state"] == "ok") == (direct.returncode == 0)
    assert f"user.max_net_namespaces={doctor.read_sysctl('user.max_net_namespaces')}" in net["seen"]
    assert checks["bwrap [here]"]["seen"].startswith("bubblewrap ")
    assert code == doctor.exit_code([doctor.Check(n, c["state"], c["seen"]) for n, c in checks.items()])


@pytest.mark.parametrize("message", MESSAGES)
def test_a_bwrap_failing_without_network_namespaces_gives_the_shared_network_fallback(tmp_path, monkeypatch, message):
    monkeypatch.setenv("PATH", fake_bwrap(tmp_path / "bin", message))
    code, checks = doctor_json(["--no-slurm"])
    net = checks["network namespaces [here]"]
    assert code == 1 and net["state"] == "fail"
    assert message in net["seen"] and FALLBACK in net["fix"] and "network: shared" in net["fix"]
    assert checks["user namespaces [here]"]["state"] == "ok"  # only the network namespace is refused
    result = CliRunner().invoke(cli.main, ["doctor", "--no-slurm"])  # the human table says the same
    assert result.exit_code == 1 and "fail" in result.output and "sandbox.network=true" in result.output


@needs_bwrap
def test_a_user_namespace_with_max_net_namespaces_0_makes_the_real_bwrap_fail(tmp_path):
    """The kernel's per-namespace limit: real sysctl 0, real bwrap refused, the rest of the machine untouched."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    inner = f"echo 0 > {NET_SYSCTL} && exec {sys.executable} -m hpc_mle.cli doctor --no-slurm --json"
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", inner], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        pytest.skip(f"no child user namespace with its own limits here: {proc.stderr.strip()[-200:]}")
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    net = checks["network namespaces [here]"]
    assert proc.returncode == 1 and net["state"] == "fail"
    assert "user.max_net_namespaces=0" in net["seen"] and "Creating new namespace failed" in net["seen"]
    assert FALLBACK in net["fix"]
    assert NET_SYSCTL.read_text().strip() != "0"  # only the child namespace had the limit


@needs_bwrap
def test_the_machine_wide_sysctl_at_0_fails_the_network_check():
    """`sysctl -w user.max_net_namespaces=0` for well under a second, restored in a finally."""
    old = NET_SYSCTL.read_text()
    try:
        NET_SYSCTL.write_text("0")
    except OSError as exc:
        pytest.skip(f"user.max_net_namespaces is not writable here ({exc.strerror}); the child-namespace and "
                    "fake-bwrap tests cover it")
    try:
        check = doctor.network_namespaces()
    finally:
        NET_SYSCTL.write_text(old)
    assert check.state == "fail" and "user.max_net_namespaces=0" in check.seen and FALLBACK in check.fix


def test_user_namespace_settings_are_read_and_a_refused_probe_fails_with_the_fix(tmp_path, monkeypatch):
    root = tmp_path / "sys"
    for name, value in {"user/max_user_namespaces": "0", "kernel/apparmor_restrict_unprivileged_userns": "1"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(value + "\n")
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/bwrap")

    def refused(argv):
        return subprocess.CompletedProcess(argv, 1, "", "bwrap: No permissions to creating new namespace")

    check = doctor.user_namespaces(root, refused)
    assert check.state == "fail" and "max_user_namespaces=0" in check.seen
    assert "apparmor_restrict_unprivileged_userns=1" in check.seen and "sandbox=apptainer" in check.fix
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    assert doctor.user_namespaces(root, refused).state == "warn"  # root's bwrap needs no user namespace


def test_apptainer_without_no_eval_fails_and_names_the_version_needed(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/apptainer" if name == "apptainer" else None)
    old_help = "Usage: apptainer exec [exec options...]\n  --containall --cleanenv --no-privs --drop-caps --network"

    def old(argv):
        out = "apptainer version 1.0.3" if argv[-1] == "--version" else old_help
        return subprocess.CompletedProcess(argv, 0, out, "")

    check = doctor.apptainer_options(old)
    assert check.state == "fail" and "1.0.3" in check.seen and "--no-eval" in check.seen
    assert "--writable-tmpfs" in check.seen and "1.1" in check.fix


# ---------------------------------------------------------------- Slurm settings


def test_wckeys_requeue_and_gpu_binding_are_judged_from_slurms_settings(tmp_path):
    conf = tmp_path / "slurm.conf"
    config = {"SLURM_CONF": str(conf), "AccountingStorageEnforce": "associations,limits,wckeys",
              "JobRequeue": "0", "TaskPlugin": "task/affinity,task/cgroup", "ProctrackType": "proctrack/cgroup"}
    def sacctmgr(names: str):
        return lambda argv: subprocess.CompletedProcess(argv, 0, names, "")

    wck = doctor.wckeys(config, sacctmgr(""))
    assert wck.state == "fail" and "your wckeys: none" in wck.seen
    assert "cluster.wckey=" in wck.fix and "AccountingStorageEnforce" in wck.fix
    if shutil.which("sacctmgr"):  # the user has wckeys: name one for cluster.wckey
        mine = doctor.wckeys(config, sacctmgr("proj-b\n*proj-a\n"))
        assert mine.state == "warn" and "proj-a, proj-b" in mine.seen and mine.fix.startswith("cluster.wckey=proj-a")
    assert doctor.job_requeue(config).state == "warn" and "resume" in doctor.job_requeue(config).fix
    assert doctor.gpu_binding(config, True).state == "warn"  # no cgroup.conf next to slurm.conf
    (tmp_path / "cgroup.conf").write_text("CgroupPlugin=autodetect\nConstrainDevices=no # not yet\n")
    assert "ConstrainDevices=no" in doctor.gpu_binding(config, True).seen
    (tmp_path / "cgroup.conf").write_text("ConstrainCores=yes\nConstrainDevices=yes\n")
    assert doctor.gpu_binding(config, True).state == "ok"
    assert doctor.gpu_binding(config, False).state == "skip"
    assert doctor.exit_code([wck, doctor.job_requeue(config)]) == 1
    assert doctor.exit_code([doctor.job_requeue(config)]) == 0  # a warning alone passes


def test_doctor_on_the_dev_cluster_reads_its_settings_and_runs_on_its_node(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_env[key])
    code, checks = doctor_json(["--on-node", "--cluster", "dev", "--folder", str(tmp_path / "jobs")])
    assert checks["JobRequeue [here]"] == {"name": "JobRequeue [here]", "state": "ok",
                                            "seen": "JobRequeue=1: jobs requeue unless they ask --no-requeue", "fix": ""}
    assert checks["wckey enforcement [here]"]["state"] == "ok"
    assert "2 CPUs 21500 MB 2 GPUs" in checks["partition debug [here]"]["seen"]
    assert checks["GPU binding [here]"]["state"] == "warn"  # the dev cluster has no cgroup.conf
    node = {n: c for n, c in checks.items() if not n.endswith("[here]")}
    assert {n.split(" [")[0] for n in node} == {"user namespaces", "network namespaces", "bwrap", "apptainer"}, node
    assert node[next(n for n in node if n.startswith("network namespaces"))]["state"] == \
        checks["network namespaces [here]"]["state"]  # the one node is this machine
    (script,) = (tmp_path / "jobs").glob("*/*_submission.sh")  # submitted as the attempts are: no --wckey
    assert "--job-name=hpc-mle-doctor" in script.read_text() and "--wckey" not in script.read_text()
    assert code == 0


# ---------------------------------------------------------------- the preflight and the results


def test_the_preflight_refuses_locally_and_warns_on_slurm_with_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_bwrap(tmp_path / "bin", MESSAGES[0]))
    isolated = [OmegaConf.create({"sandbox": {"kind": "bwrap", "network": False}})]
    lines, problems = preflight.namespace_check(isolated, "local")
    (problem,) = problems
    assert not problem.warning and FALLBACK in problem.fix and "RTM_NEWADDR" in problem.what
    assert any(line.startswith("network namespaces: fail") for line in lines)
    (on_slurm,) = preflight.namespace_check(isolated, "slurm")[1]
    assert on_slurm.warning and "--on-node" in on_slurm.what
    shared = [OmegaConf.create({"sandbox": {"kind": "bwrap", "network": True}})]
    assert preflight.namespace_check(shared, "local") == (["user namespaces: ok (" + doctor.user_namespaces().seen
                                                           + ")"], [])
    assert preflight.namespace_check([OmegaConf.create({"sandbox": {"kind": "none"}})], "local") == ([], [])


def test_an_attempt_with_the_network_fallback_is_marked_shared(tmp_path):
    def mode(**kw) -> str:
        return runner.network_mode(runner.AttemptConfig("mini-churn", "dummy", tmp_path, **kw))

    assert mode(sandbox="bwrap") == "isolated" and mode(sandbox="apptainer") == "isolated"
    assert mode(sandbox="bwrap", network=True) == "shared" and mode(sandbox="none") == "shared"


def test_the_report_says_how_many_sandboxed_attempts_shared_the_network():
    import pandas as pd

    from hpc_mle import analysis as an
    from hpc_mle import report

    def row(comp: str, network: str | None, unsandboxed: bool = False) -> dict:
        return {"attempt_id": comp, "competition_id": comp, "seed": 0, "scaffold": "dummy", "model": "none",
                "runtime": "10m", "hardware": "cpu", "benchmark": "lite", "benchmark_split": "lite",
                "time_limit_s": 600.0, "graded": True, "state": "done", "unsandboxed": unsandboxed,
                "network": network, "score": 0.5, "submission_exists": True, "valid_submission": True,
                "gold_medal": False, "silver_medal": False, "bronze_medal": False, "any_medal": False,
                "above_median": False, "leaderboard_source": "kaggle", "snapshots": [],
                "graded_at": "2026-11-30T10:00:00+00:00"}

    rows = [row("a", "shared"), row("b", "isolated"), row("c", "shared", unsandboxed=True), row("d", None)]
    built = report.build_report(an.normalise(pd.DataFrame(rows)), "network",
                                catalogue=an.Catalogue(splits={"lite": ("a", "b", "c", "d")}, status={}))
    overview = " ".join(next(s for s in built.sections if s.title == "Overview").text)
    assert "1 graded attempts ran sandboxed but on their node's network" in overview  # c counts as unsandboxed
    assert "1 graded attempts ran without a sandbox" in overview
