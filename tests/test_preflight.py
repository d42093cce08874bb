"""The preflight (hpc_mle/preflight.py): each refusal, against the real one-node dev cluster where Slurm is involved.

The dev node has 2 CPUs, 21500 MB and 2 GPUs (slurm/dev/); `hardware=gpu1` asks 8 CPUs and 60 GB. Each test asks
the cluster at most once (one sinfo, or one launch).
"""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner
from slurm_cluster import slurm_env  # noqa: F401  (fixture)

from hpc_mle import cli, launch, plan, preflight, prepare, slurm
from support import plan_sweep

FITS = ["cluster=dev", "hardware.cpus=1", "hardware.mem_gb=1", "cluster.grading_tasks=1"]
ONE = "benchmark.competitions=[mini-churn]"
SECRET = "sk-test-not-a-real-key-5f3a"


def use_cluster(monkeypatch, env: dict[str, str]) -> None:
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, env[key])


def queued_names(env: dict[str, str]) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, env=env).stdout


# ---------------------------------------------------------------- Slurm's text, parsed


def test_sinfo_lines_and_slurm_times_are_read_as_slurm_writes_them():
    text = ("n1|debug*|2|21500|gpu:2|infinite|idle\n"
            "n2|long|64|515000|gpu:a100:4(S:0-1),gpu:v100:1|1-12:00:00|mixed\n"
            "n3|short|8|32000+|(null)|30:00|drained*\n")
    n1, n2, n3 = preflight.parse_sinfo(text)
    assert (n1.partition, n1.default, n1.cpus, n1.mem_mb, n1.gpus, n1.max_time_min) == ("debug", True, 2, 21500,
                                                                                        {"": 2}, None)
    assert n2.gpus == {"a100": 4, "v100": 1} and n2.max_time_min == 36 * 60 and not n2.default
    assert n3.gpus == {} and n3.max_time_min == 30 and n3.mem_mb == 32000
    assert [preflight.parse_time_min(t) for t in ("45", "2:00:00", "1-0", "0:30")] == [45, 120, 1440, 0.5]
    assert preflight.mem_mb("64GB") == 65536 and preflight.mem_mb("512MB") == 512


def test_a_time_limit_above_the_partition_maxtime_is_refused(tmp_path):
    nodes = preflight.parse_sinfo("vm|debug*|2|21500|gpu:2|1:00:00|idle\n")
    cfgs, attempts, sweep = plan_sweep(["cluster=dev", "cluster.partition=null", "hardware.cpus=1", "hardware.mem_gb=1",
                                     ONE, "runtime=24h"], tmp_path)
    jobs = slurm.planned_jobs(sweep, attempts, cfgs[0].cluster, {}, "abc123")
    section = preflight.resources_section(cfgs[0].cluster, jobs, nodes)
    (agents, grading) = [p for p in section.problems]
    assert "--time=1455 min is above partition debug's MaxTime (60 min)" in agents.what  # 24 h + 15 min margin
    assert "runtime.time_limit" in agents.fix
    assert grading.what.startswith("grading (grading): --time=120 min")
    assert "fits 1 of 1 node(s) (MaxTime 60 min)" in "\n".join(section.lines)  # the size fits; the time does not


# ---------------------------------------------------------------- against the dev cluster


def test_oversized_request_refused_and_a_fitting_one_accepted(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    use_cluster(monkeypatch, slurm_env)
    nodes = preflight.query_nodes()  # the one cluster query of this test
    assert {n.partition for n in nodes} >= {"debug"} and max(n.cpus for n in nodes) == 2
    big_cfgs, big, sweep = plan_sweep(["cluster=dev", "hardware=gpu1", ONE], tmp_path)
    small_cfgs, small, _ = plan_sweep([*FITS, "hardware.gpus=2", ONE], tmp_path)
    refused = preflight.resources_section(big_cfgs[0].cluster,
                                          slurm.planned_jobs(sweep, big, big_cfgs[0].cluster, {}, "x"), nodes)
    (problem,) = refused.problems
    assert "asks 8 CPUs, 60 GB, 1 GPU, 25 min, but no node of partition debug has that" in problem.what
    assert problem.fix.startswith("hardware.cpus=2 hardware.mem_gb=20 (")  # only what is too big; 1 GPU fits
    accepted = preflight.resources_section(small_cfgs[0].cluster,
                                           slurm.planned_jobs(sweep, small, small_cfgs[0].cluster, {}, "x"), nodes)
    assert accepted.problems == []
    assert any("asks 1 CPU, 1 GB, 2 GPUs, 25 min on partition debug: fits 1 of 1" in x for x in accepted.lines)
    served_cfgs, served, _ = plan_sweep([*FITS, "model=llama-3.1-70b-vllm", "scaffold=dummy", ONE], tmp_path)
    server_jobs = slurm.planned_jobs(sweep, served, served_cfgs[0].cluster, launch.check_models(served_cfgs), "x")
    assert [j.role for j in server_jobs] == ["serve-llama-3.1-70b-vllm", "agents0-0", "teardown-llama-3.1-70b-vllm",
                                             "grading", "analysis"]
    (server,) = preflight.resources_section(served_cfgs[0].cluster, server_jobs, nodes).problems
    assert "asks 8 CPUs, 96 GB, 2 GPUs, " in server.what and ", but no node" in server.what
    # the server's 2 GPUs (tensor parallel) fit a node of the partition: only CPUs and memory are too big
    assert server.fix.startswith("model.serve_conf.cpus=2 model.serve_conf.mem_gb=20 (")
    model = launch.check_models(served_cfgs)["llama-3.1-70b-vllm"]
    big = {**model, "serve_conf": {**model["serve_conf"], "gpus": 4, "cpus": 1, "mem_gb": 1}}
    (too_many,) = preflight.resources_section(served_cfgs[0].cluster, slurm.planned_jobs(
        sweep, served, served_cfgs[0].cluster, {"llama-3.1-70b-vllm": big}, "x"), nodes).problems
    assert "4 GPUs" in too_many.what and too_many.fix.startswith("model.serve_conf.gpus=2 (")


def test_dry_run_lists_every_problem_and_exits_non_zero(slurm_env, tmp_path, monkeypatch, capsys):  # noqa: F811
    use_cluster(monkeypatch, slurm_env)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HPC_MLE_VENVS", str(tmp_path / "venvs"))  # an empty venv cache
    code = launch.launch(["-m", "scaffold=aide,baseline", "model=gpt4o", "hardware=gpu1", "cluster=dev",
                          "benchmark=lite", "benchmark.competitions=[aerial-cactus-identification]",
                          f"data_dir={tmp_path / 'data'}", f"output_root={tmp_path / 'runs'}", "--dry-run"])
    out = capsys.readouterr().out
    assert code == launch.PREFLIGHT_FAILED
    titles = ["site", "jobs", "resources vs nodes", "data", "keys and endpoints", "scaffold environments"]
    assert [line for line in out.splitlines() if line in titles] == titles  # grouped, in this order
    verdict = out.split("verdict: ")[1]
    assert verdict.startswith("REFUSED, 4 problem(s), 1 warning(s)")
    assert "no node of partition debug has that" in verdict  # oversized
    assert f"fix: hpc-mle prepare -c aerial-cactus-identification --data-dir {tmp_path / 'data'}" in verdict
    assert "needs about 0.5 GB of disk" in verdict
    assert "fix: export OPENAI_API_KEY=<your key> before launching" in verdict
    assert "fix: hpc-mle scaffolds venv aide" in verdict
    assert "WARNING: model=gpt4o is set, but scaffold baseline uses no model" in verdict
    assert "#SBATCH --partition=debug" in out and "{'" not in out  # #SBATCH lines, no Python reprs
    assert not (tmp_path / "runs").exists()


def test_a_real_launch_refuses_before_submitting_anything(slurm_env, tmp_path, monkeypatch, capsys):  # noqa: F811
    use_cluster(monkeypatch, slurm_env)
    args = ["cluster=dev", "hardware=gpu1", "scaffold=dummy", ONE, f"output_root={tmp_path / 'runs'}"]
    cfgs, _, sweep = plan_sweep(args[:-1], tmp_path / "runs")
    with pytest.raises(plan.PlanError, match=r"preflight refused the launch \(1 problem\(s\).*nothing was written"):
        launch.launch(args)
    assert "PROBLEM: gpu1-cpu8-mem60g-t25m-debug (agents0-0)" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # no sweep folder, not even half a one
    assert f"{slurm.NAME_PREFIX}{slurm.sweep_key(sweep)}-" not in queued_names(slurm_env)


def test_the_dry_run_shows_the_sbatch_lines_the_launch_then_submits(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    use_cluster(monkeypatch, slurm_env)
    args = ["-m", "scaffold=dummy", "seed=range(2)", ONE, *FITS, "hardware.gpus=1", "cluster.additional={hold: true}",
            "cluster.setup=[echo preflight-setup]", f"data_dir={tmp_path / 'data'}", f"output_root={tmp_path}"]
    assert launch.launch(args) == 0  # held: nothing runs; the fixture cancels the jobs
    cfgs, attempts, sweep = plan_sweep(args[1:-1], tmp_path)
    launch_id = plan.read_sweep(sweep)["launches"][0]["launch"]
    expected = {j.role: j for j in slurm.planned_jobs(sweep, attempts, cfgs[0].cluster, {}, launch_id)}
    assert [(j.role, j.tasks) for j in expected.values()] == [("agents0-0", 2), ("grading", 1), ("analysis", 1)]
    scripts = {p.read_text() for p in (sweep / "slurm").rglob("*_submission.sh")}
    for role, job in expected.items():
        (script,) = [s for s in scripts if f"-{launch_id}-{role}\n" in s]
        real = script.splitlines()

        def without_dependency(lines: list[str]) -> list[str]:
            return [x for x in lines if not x.startswith("#SBATCH --dependency=")]

        assert without_dependency([x for x in real if x.startswith("#SBATCH")]) == without_dependency(
            job.sbatch_lines())
        assert job.setup_lines() == ["echo preflight-setup"] and "echo preflight-setup" in real
    assert "#SBATCH --array=0-1%2" in expected["agents0-0"].sbatch_lines()


# ---------------------------------------------------------------- data, keys, environments (no cluster needed)


def test_missing_data_is_listed_with_the_prepare_command_and_its_disk(tmp_path):
    _, attempts, _ = plan_sweep(["benchmark=lite", "benchmark.competitions=[aerial-cactus-identification,"
                              "denoising-dirty-documents]"], tmp_path)
    section = preflight.data_section(attempts, str(tmp_path / "data"))
    assert [p.fix.split("   ")[0] for p in section.problems] == [
        f"hpc-mle prepare -c {c} --data-dir {tmp_path / 'data'}"
        for c in ("aerial-cactus-identification", "denoising-dirty-documents")]
    assert "2 competition(s): 0 ready, 2 not prepared (about 1.5 GB of disk to prepare them)" in section.lines
    prepare.prepare("mini-churn", tmp_path / "mini")
    _, minis, _ = plan_sweep(["benchmark.competitions=[mini-churn,mini-digits]"], tmp_path)
    ready = preflight.data_section(minis, str(tmp_path / "mini"))
    assert ready.problems == [] and "2 competition(s): 2 ready, 0 not prepared" in ready.lines
    assert "mini-digits: embedded data, prepared at launch" in ready.lines
    assert preflight.data_section(minis, str(tmp_path / "empty")).problems == []  # embedded: prepared at launch


def test_missing_key_refused_and_a_key_is_never_printed(tmp_path):
    cfgs, _, _ = plan_sweep(["scaffold=aide", "model=gpt4o"], tmp_path)
    (missing,) = preflight.keys_section(cfgs, env={}).problems
    assert "reads its API key from $OPENAI_API_KEY, which is not set" in missing.what
    present = preflight.keys_section(cfgs, env={"OPENAI_API_KEY": SECRET})
    assert present.problems == [] and "  key from $OPENAI_API_KEY: set" in present.lines
    assert SECRET not in "\n".join(present.lines)
    none_cfgs, _, _ = plan_sweep(["scaffold=aide"], tmp_path)
    (no_model,) = preflight.keys_section(none_cfgs, env={}).problems
    assert no_model.what == "scaffold aide needs a model, but model=none" and not no_model.warning


def test_model_for_baseline_is_a_warning_not_a_refusal(tmp_path):
    cfgs, _, _ = plan_sweep(["scaffold=baseline,dummy", "model=gpt4o"], tmp_path)
    section = preflight.keys_section(cfgs, env={})
    assert [p.warning for p in section.problems] == [True, True]
    report = preflight.Report([section])
    assert report.ok and report.verdict().startswith("verdict: ready, 2 warning(s)")


def test_missing_venv_and_missing_image_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HPC_MLE_VENVS", str(tmp_path / "venvs"))  # an empty venv cache
    cfgs, _, _ = plan_sweep(["scaffold=aide", "model=gpt4o"], tmp_path)
    (venv,) = preflight.envs_section(cfgs).problems
    assert "runs in its own venv, which is not built" in venv.what and venv.fix == "hpc-mle scaffolds venv aide"
    sif = tmp_path / "aide.sif"
    cfgs, _, _ = plan_sweep(["scaffold=aide", "model=gpt4o", "sandbox=apptainer", f"sandbox.image={sif}"], tmp_path)
    (image,) = preflight.envs_section(cfgs).problems
    assert image.what == f"scaffold aide: image {sif} does not exist"
    assert image.fix.startswith("hpc-mle containers build aide --output-dir DIR")
    sif.write_bytes(b"SIF")  # present: accepted (its contents are apptainer's business)
    assert preflight.envs_section(cfgs).problems == []
    cfgs, _, _ = plan_sweep(["scaffold=mlab", "model=gpt4o"], tmp_path)
    (mlab,) = preflight.envs_section(cfgs).problems
    assert "runs from its Apptainer image (containers/mlab.def), not in sandbox=bwrap" in mlab.what


def test_cluster_local_skips_the_slurm_checks(tmp_path):
    cfgs, attempts, sweep = plan_sweep(["scaffold=dummy", ONE, f"data_dir={tmp_path / 'data'}"], tmp_path)
    report = preflight.run(sweep, attempts, cfgs, {})
    assert [s.title for s in report.sections] == ["site", "resources vs nodes", "data", "keys and endpoints",
                                                  "scaffold environments"]
    assert "cluster=local: runs on this machine; Slurm checks skipped" in report.text()
    assert report.ok, report.text()


def test_resume_refuses_the_same_way(slurm_env, tmp_path, monkeypatch):  # noqa: F811
    """A sweep resumed from a shell without its key (or whose venv is gone) submits nothing."""
    cfgs, attempts, sweep = plan_sweep(["scaffold=aide", "model=gpt4o", "cluster=dev", ONE], tmp_path)
    plan.write_plan(sweep, cfgs, [["scaffold=aide"]], attempts)
    use_cluster(monkeypatch, slurm_env)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HPC_MLE_VENVS", str(tmp_path / "venvs"))
    out = CliRunner().invoke(cli.main, ["resume", str(sweep)])
    assert out.exit_code == 2, out.output
    assert "preflight refused the launch (2 problem(s)" in " ".join(out.stderr.split()), out.stderr
    assert "fix: export OPENAI_API_KEY=<your key> before launching" in out.stdout
    assert "fix: hpc-mle scaffolds venv aide" in out.stdout
    assert not (sweep / "slurm").exists() and not (sweep / slurm.LAUNCH_LOG).exists()
    assert f"{slurm.NAME_PREFIX}{slurm.sweep_key(sweep)}-" not in queued_names(slurm_env)


def test_typed_gpus_and_gpus_per_node_are_matched_by_type(tmp_path):
    nodes = preflight.parse_sinfo("g1|gpu*|64|515000|gpu:a100:4(S:0-1)|2-00:00:00|idle\n")
    for syntax, gpu_type, line, fits in (("gres", "a100", "--gres=gpu:a100:2", True),
                                         ("gres", "h100", "--gres=gpu:h100:2", False),
                                         ("gpus-per-node", "null", "--gpus-per-node=2", True)):
        cfgs, attempts, sweep = plan_sweep(["cluster=slurm", f"cluster.gpu_syntax={syntax}", "hardware=gpu2",
                                         f"hardware.gpu_type={gpu_type}", ONE], tmp_path)
        (agents, *_) = slurm.planned_jobs(sweep, attempts, cfgs[0].cluster, {}, "x")
        assert f"#SBATCH {line}" in agents.sbatch_lines()
        assert preflight.request_of(agents).gpus == 2
        problems = preflight.resources_section(cfgs[0].cluster, [agents], nodes).problems
        assert (problems == []) is fits, problems


def test_a_judge_audit_needs_its_key_here_and_the_key_is_never_printed(tmp_path):
    """`analysis.audit=judge`: the judge's model config resolves and its key variable is set, as for agents' models;
    without the key the preflight names the variable and both fixes (export it, or analysis.audit=checks)."""
    (cfg, *_), _, _ = plan_sweep(["analysis.audit=judge", "analysis.audit_judge=gpt4o"], tmp_path)
    missing = preflight.judge_section(cfg, env={})
    (problem,) = missing.problems
    assert "reads its API key from $OPENAI_API_KEY, which is not set here" in problem.what and not problem.warning
    assert "analysis.audit=checks" in problem.fix and "export OPENAI_API_KEY=<your key>" in problem.fix
    present = preflight.judge_section(cfg, env={"OPENAI_API_KEY": SECRET})
    assert present.problems == [] and "  key from $OPENAI_API_KEY: set" in present.lines
    assert SECRET not in "\n".join(present.lines)
    (cfg, *_), _, _ = plan_sweep(["analysis.audit=judge", f"analysis.audit_judge={tmp_path / 'nope.yaml'}"], tmp_path)
    (unknown,) = preflight.judge_section(cfg, env={}).problems
    assert "does not resolve to a model config" in unknown.what and "analysis.audit=checks" in unknown.fix
    (cfg, *_), _, _ = plan_sweep(["analysis.audit=checks"], tmp_path)
    assert preflight.judge_section(cfg, env={}) is None
