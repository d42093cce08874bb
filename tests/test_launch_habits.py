"""Hydra and Slurm habits: --cfg, --help, site configs outside the clone, suggestions, validation, job names,
option aliases shared with upstream. In-process (no Slurm, no attempt runs): a few seconds in all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpc_mle import cli, kaggle, launch, slurm


def run(capsys, *args: str) -> tuple[int, str, str]:
    """`python -m hpc_mle.launch ARGS` in this process: exit status, stdout, stderr."""
    try:
        launch.main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    """Each test sees an empty user config dir of its own, never the real ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def site_file(folder: Path, name: str, partition: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nkind: slurm\npartition: {partition}\naccount: proj42\n"
                    "setup: [module load apptainer]\n")
    return path


# ---------------------------------------------------------------- --cfg


def test_cfg_job_prints_the_composed_config_and_writes_nothing(capsys, tmp_path):
    code, out, _ = run(capsys, "--cfg", "job", "seed=5", "runtime.time_limit=30m", f"output_root={tmp_path / 'runs'}")
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["seed"] == 5 and cfg["runtime"]["time_limit"] == "30m"
    assert cfg["cluster"]["name"] == "local" and cfg["scaffold"]["name"] == "baseline"
    assert not (tmp_path / "runs").exists()
    code, out, _ = run(capsys, "-c", "job", "-p", "hardware", "hardware=gpu1")
    assert code == 0 and yaml.safe_load(out) == {"name": "gpu1", "gpus": 1, "cpus": 8, "mem_gb": 60,
                                                 "gpu_type": None, "label": None}
    code, out, _ = run(capsys, "--cfg=all", "-m", "seed=0,1", f"output_root={tmp_path}")
    docs = out.split("# job ")[1:]
    assert code == 0 and len(docs) == 2 and docs[1].startswith("2/2: seed=1")
    second = yaml.safe_load(docs[1].split("\n", 1)[1])
    assert second["seed"] == 1 and second["hydra"]["mode"] == "MULTIRUN"
    assert second["hydra"]["sweep_dir"].startswith(str(tmp_path))
    assert second["hydra"]["overrides"] == ["seed=1", f"output_root={tmp_path}"]
    code, _, err = run(capsys, "--cfg", "jobs")
    assert code == 2 and "use one of job, hydra, all" in err


# ---------------------------------------------------------------- site configs


def test_a_site_config_outside_the_clone(capsys, tmp_path):
    path = site_file(tmp_path / "elsewhere", "mysite", "gpu-a100")
    code, out, err = run(capsys, f"cluster={path}", "--cfg", "job", "-p", "cluster")
    cluster = yaml.safe_load(out)
    assert code == 0 and cluster["name"] == "mysite" and cluster["partition"] == "gpu-a100"
    assert cluster["setup"] == ["module load apptainer"] and cluster["max_restarts"] == 3  # schema defaults kept
    assert f"site config: cluster=mysite: {path}" in err
    dotted = path.rename(path.with_name("lab.v2.yml"))  # a dotted name and Hydra's unread .yml suffix
    code, out, _ = run(capsys, f"cluster={dotted}", "--cfg", "job", "-p", "cluster.partition")
    assert code == 0 and yaml.safe_load(out) == {"cluster.partition": "gpu-a100"}
    code, _, err = run(capsys, f"cluster={tmp_path / 'missing.yaml'}", "--cfg", "job")
    assert code == 2 and "no such file" in err and "missing.yaml" in err


def test_user_config_dir_and_config_dir_add_options_and_shadow_ours(capsys, tmp_path):
    user = tmp_path / "xdg" / "hpc-mle" / "conf" / "cluster"
    site_file(user, "mysite", "from-user-dir")
    site_file(user, "slurm", "shadowed")  # replaces conf/cluster/slurm.yaml for this user
    code, out, _ = run(capsys, "cluster=mysite", "--cfg", "job", "-p", "cluster.partition")
    assert code == 0 and yaml.safe_load(out) == {"cluster.partition": "from-user-dir"}
    code, out, err = run(capsys, "cluster=slurm", "--cfg", "job", "-p", "cluster.partition")
    assert yaml.safe_load(out) == {"cluster.partition": "shadowed"} and str(user / "slurm.yaml") in err
    assert kaggle.load_cluster("mysite").partition == "from-user-dir"  # `prepare --slurm --cluster mysite` too
    extra = tmp_path / "project-conf"
    site_file(extra / "cluster", "mysite", "from-config-dir")
    for flags in (["--config-dir", str(extra)], ["-cd", str(extra)], [f"hydra.searchpath=[file://{extra}]"]):
        code, out, _ = run(capsys, *flags, "cluster=mysite", "--cfg", "job", "-p", "cluster.partition")
        assert code == 0 and yaml.safe_load(out) == {"cluster.partition": "from-config-dir"}, flags
    code, out, _ = run(capsys, "--config-dir", str(extra), "--help")
    cluster_line = next(line for line in out.splitlines() if line.strip().startswith("cluster "))
    assert code == 0 and str(extra) in out and "mysite" in cluster_line and "slurm" in cluster_line
    primary = (Path(launch.__file__).parent.parent / "conf" / "config.yaml").read_text()
    (extra / "config.yaml").write_text(primary.replace("seed: 0", "seed: 7"))  # a site's own primary config
    code, out, err = run(capsys, "--config-dir", str(extra), "--cfg", "job", "-p", "seed")
    assert code == 0 and yaml.safe_load(out) == {"seed": 7} and f"primary config: {extra / 'config.yaml'}" in err
    code, _, err = run(capsys, "--config-dir", str(tmp_path / "nope"), "--cfg", "job")
    assert code == 2 and "no such directory" in err


# ---------------------------------------------------------------- --help


def test_help_lists_groups_options_and_settings(capsys):
    code, out, _ = run(capsys, "--help")
    groups = {line.split()[0]: line for line in out.split("\nconfig groups (")[1].split("\n\n")[0].splitlines()[1:]}
    assert code == 0 and set(groups) == {"model", "scaffold", "benchmark", "runtime", "hardware", "cluster", "sandbox"}
    assert "gpt4o" in groups["model"] and "none*" in groups["model"] and "local*" in groups["cluster"]
    assert "24h" in groups["runtime"] and "aide" in groups["scaffold"]
    for key in ("runtime.time_limit", "benchmark.competitions", "sweep_name", "output_root", "data_dir", "--cfg",
                "--config-dir", "--dry-run"):
        assert key in out, key


# ---------------------------------------------------------------- mistakes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["modle=gpt4o"], "Did you mean model=gpt4o?"),
        (["model=gpt-4o"], "Did you mean model=gpt4o?"),
        (["hardware.gpu=2"], "Did you mean hardware.gpus=2?"),
        (["runtime.time_limt=1h"], "Did you mean runtime.time_limit=1h?"),
        (["--dryrun"], "unknown option --dryrun. Did you mean --dry-run?"),
        (["runtime.time_limit=-5m"], "runtime.time_limit=-5m: the agent's budget must be at least 1 s"),
        (["runtime.time_limit=soon"], "runtime.time_limit=soon: not a duration"),
        (["cluster.max_parallel=0"], "cluster.max_parallel=0: attempts at once on this machine, at least 1"),
        (["hardware.cpus=0"], "hardware.cpus=0"),
        (["hydra.run.dir=outputs/x"], "Use output_root=DIR"),
        (["hydra/launcher=submitit_slurm"], "Use cluster=slurm"),
        (["hydra.launcher.partition=gpu"], "Use cluster.partition=NAME"),
        (["-cn", "other"], "Use --config-dir DIR"),
    ],
)
def test_mistakes_are_refused_with_the_fix(capsys, args, message):
    code, out, err = run(capsys, *args, "--cfg", "job")
    assert code == 2 and message in err and out == "", err


def test_a_misspelled_competition_gets_the_closest_id(capsys, tmp_path):
    code, _, err = run(capsys, "benchmark.competitions=[mini-chrn]", "--dry-run", f"output_root={tmp_path}")
    assert code == 2 and "mini-chrn are not in split 'mini' (mini-chrn: did you mean mini-churn?)" in err
    assert list(tmp_path.iterdir()) == []


def test_harmless_hydra_keys_are_accepted_with_a_note(capsys):
    code, out, err = run(capsys, "hydra.job.chdir=true", "hydra/job_logging=disabled", "--cfg", "job", "-p", "seed")
    assert code == 0 and yaml.safe_load(out) == {"seed": 0}
    assert "note: hydra.job.chdir=true: ignored" in err and "hydra/job_logging=disabled: ignored" in err
    code, out, _ = run(capsys, "hydra.mode=MULTIRUN", "seed=0,1", "--cfg", "job", "-p", "seed")
    assert code == 0 and out.count("# job") == 2


# ---------------------------------------------------------------- job names


def test_job_names_lead_with_the_sweep_name_and_the_sweep_finds_its_jobs(tmp_path):
    sweep = tmp_path / "a" / "my-agents-study"
    twin = tmp_path / "b" / "my-agents-study"  # the same name under another output_root: another sweep
    name = slurm.job_name(sweep, "abc123", "grading")
    assert name.startswith("my-agents-study-") and name.endswith("-abc123-grading")
    assert slurm.job_name(tmp_path / "x y/z", "l", "r").startswith("z-")
    assert kaggle.prepare_job_name(["spooky-author-identification", "mini-churn"]) == "prepare-spooky-author-identification+1"
    legacy = f"{slurm.LEGACY_PREFIX}{slurm.sweep_key(sweep).rsplit('-', 1)[1]}-old111-agents0-0"
    queue = [slurm.QueuedJob("100_0", slurm.job_name(sweep, "abc123", "agents0-0"), "RUNNING", ""),
             slurm.QueuedJob("101", name, "PENDING", "Dependency"),
             slurm.QueuedJob("90_1", legacy, "RUNNING", ""),
             slurm.QueuedJob("200", slurm.job_name(twin, "abc123", "grading"), "PENDING", "")]
    assert [q.job for q in slurm.sweep_jobs(sweep, queue)] == ["100_0", "101", "90_1"]
    sweep.mkdir(parents=True)
    for role, job in (("agents0-0", "100"), ("grading", "101"), ("analysis", "102")):
        slurm.log(sweep, "submitted", launch="abc123", role=role, name=slurm.job_name(sweep, "abc123", role),
                  job=job, tasks={})
    slurm.log(sweep, "submitted", launch="old111", role="agents0-0", name=legacy, job="90", tasks={})
    done = slurm.reconcile(sweep, queue)
    # only agent arrays count as live agents, though the sweep's own name contains "-agents"
    assert done.cancelled == [] and done.live_agents == ["100", "90"]


# ---------------------------------------------------------------- hpc-mle option names


def test_option_aliases_shared_with_upstream(tmp_path, mini_data):
    runner = CliRunner()
    by_split = runner.invoke(cli.main, ["competitions", "list", "--split", "mini", "--json"])
    by_benchmark = runner.invoke(cli.main, ["competitions", "list", "--benchmark", "mini", "--json"])
    assert by_split.exit_code == 0 and by_split.output == by_benchmark.output
    assert len(json.loads(by_split.output)) == 6
    both = runner.invoke(cli.main, ["prepare", "--competition-id", "mini-churn", "--lite"])
    assert both.exit_code == 2 and "give either" in both.output
    ids = tmp_path / "ids.txt"
    ids.write_text("mini-churn\n")
    prepared = runner.invoke(cli.main, ["prepare", "-l", str(ids), "--data-dir", str(mini_data)])
    assert prepared.exit_code == 0 and "mini-churn" in prepared.output and "already-prepared" in prepared.output
    sample = mini_data / "mini-churn" / "prepared" / "public" / "sample_submission.csv"
    jsonl = tmp_path / "subs.jsonl"
    jsonl.write_text(json.dumps({"competition_id": "mini-churn", "submission_path": str(sample)}) + "\n")
    graded = runner.invoke(cli.main, ["grade", "--submission", str(jsonl), "--output-dir", str(tmp_path / "out"),
                                      "--data-dir", str(mini_data)])
    assert graded.exit_code == 0, graded.output
    assert "total_valid_submissions" in graded.output and '"total_runs"' not in graded.output  # lines, not JSON
    cfg = runner.invoke(cli.main, ["launch", "--cfg", "job", "-p", "benchmark.split"])
    assert cfg.exit_code == 0 and yaml.safe_load(cfg.output) == {"benchmark.split": "mini"}
