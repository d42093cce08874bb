"""Sandbox command lines, built without running anything, and the image definitions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hpc_mle import competitions, containers, paths, runner, sandbox


@pytest.fixture
def two_gpu_launch(tmp_path, mini_data):
    image = tmp_path / "baseline.sif"
    image.write_bytes(b"not really an image")
    cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold="baseline", out=tmp_path / "att",
                               sandbox="apptainer", image=image, gpus=("0", "1"), data_dir=mini_data,
                               hardware="2 NVIDIA H100 80GB HBM3", time_limit_s=3600)
    sock = tmp_path / "sock"
    sock.mkdir()
    launch = runner.build_launch(cfg, competitions.get("mini-churn"), runner.load_scaffold("baseline"), sock,
                                 3600, cfg.gpus)
    return launch, cfg, sock, image


def test_apptainer_command_for_a_two_gpu_attempt(two_gpu_launch, mini_data):
    launch, cfg, sock, image = two_gpu_launch
    out = cfg.out
    public = paths.public_dir("mini-churn", mini_data)
    env = [f"--env={k}={v}" for k, v in sorted(launch.env.items())]
    expected = [
        "apptainer", "exec", "--containall", "--cleanenv", "--no-home", "--writable-tmpfs", "--nv",
        "--net", "--network", "none",
        "--bind", f"{public}:/home/data:ro",
        "--bind", f"{out}/submission:/home/submission:rw",
        "--bind", f"{out}/logs:/home/logs:rw",
        "--bind", f"{out}/code:/home/code:rw",
        "--bind", f"{out}/harness/instructions.txt:/home/instructions.txt:ro",
        "--bind", f"{out}/harness/instructions_obfuscated.txt:/home/instructions_obfuscated.txt:ro",
        "--bind", f"{out}/harness/validate_submission.sh:/home/validate_submission.sh:ro",
        "--bind", f"{out}/harness:/opt/hpc-mle:ro",
        "--bind", f"{sock}:/run/hpc-mle:rw",
        "--bind", f"{launch.scratch}:/tmp:rw",
        "--bind", f"{out}/agent:/home/agent:rw",
    ]
    argv = launch.argv
    env_args = [f"--env={argv[i + 1]}" for i, a in enumerate(argv) if a == "--env"]
    without_env = [a for i, a in enumerate(argv) if a != "--env" and (i == 0 or argv[i - 1] != "--env")]
    assert without_env[: len(expected)] == expected
    assert without_env[len(expected):] == ["--pwd", "/home", str(image), "/bin/sh", "/opt/hpc-mle/entry.sh",
                                           "python3", "/home/agent/baseline.py"]
    assert env_args == env
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert launch.env["HARDWARE"] == "2 NVIDIA H100 80GB HBM3"
    assert launch.env["VALIDATION_URL"] == "http://localhost:5000/validate"
    assert "PATH" not in launch.env  # the image brings its own
    assert not any(str(paths.private_dir("mini-churn", mini_data)) in a for a in argv)


def test_bwrap_command_hides_the_data_root_and_binds_gpus_only_when_granted(tmp_path):
    plan = sandbox.Plan(argv=("true",), mounts=(sandbox.Mount(tmp_path / "pub", "/home/data"),),
                        env={"A": "1"}, network=False)
    cmd = sandbox.bwrap_command(plan, hidden=[tmp_path / "private"])
    assert cmd[:6] == ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                       "--unshare-uts"]
    assert "--unshare-net" in cmd and "--clearenv" in cmd and "--dev-bind" not in cmd
    assert cmd[cmd.index("--setenv") + 1: cmd.index("--setenv") + 3] == ["A", "1"]
    with_net = sandbox.bwrap_command(sandbox.Plan(argv=("true",), mounts=(), env={}, network=True))
    assert "--unshare-net" not in with_net


def test_a_plan_that_would_expose_the_answers_is_refused(tmp_path):
    data = tmp_path / "data"
    plan = sandbox.Plan(argv=("true",), mounts=(sandbox.Mount(data, "/home/data"),), env={})
    with pytest.raises(sandbox.SandboxError, match="would be visible inside the sandbox"):
        sandbox.bwrap_command(plan, hidden=[data / "comp" / "prepared" / "private"])
    with pytest.raises(sandbox.SandboxError):
        sandbox.apptainer_command(sandbox.Plan(argv=("true",), mounts=(sandbox.Mount(data, "/x"),), env={},
                                               image=tmp_path / "i.sif"), hidden=[data])


def test_none_sandbox_maps_contract_paths_to_host_folders(tmp_path):
    plan = sandbox.Plan(argv=("python3", "/home/agent/a.py"),
                        mounts=(sandbox.Mount(tmp_path / "agent", "/home/agent"),
                                sandbox.Mount(tmp_path / "sub", "/home/submission")),
                        env={"SUBMISSION_DIR": "/home/submission", "HARDWARE": "a CPU"})
    argv, env, cwd = sandbox.none_command(plan)
    assert argv == ["python3", f"{tmp_path}/agent/a.py"]
    assert env == {"SUBMISSION_DIR": f"{tmp_path}/sub", "HARDWARE": "a CPU"}
    assert cwd == "/home"


@pytest.mark.skipif(not Path("/dev/nvidia0").exists(), reason="no NVIDIA GPU on this machine")
def test_bwrap_binds_nvidia_devices_when_gpus_are_granted():
    cmd = sandbox.bwrap_command(sandbox.Plan(argv=("true",), mounts=(), env={}, gpus=("0",)))
    assert cmd[cmd.index("/dev/nvidiactl") - 1:][:3] == ["--dev-bind", "/dev/nvidiactl", "/dev/nvidiactl"]


def test_container_definitions_parse_and_check():
    defs = containers.definitions()
    assert {"base", "dummy", "baseline"} <= set(defs)
    for definition in defs.values():
        assert containers.check(definition) == [], definition.path
    assert containers.build_order("baseline") == ["base", "baseline"]
    assert ("../hpc_mle/agents/dummy.py", "/home/agent/dummy.py") in defs["dummy"].files()
    from spython.main.parse.parsers import SingularityParser

    recipes = SingularityParser(str(defs["base"].path)).recipe  # spython reads docker-bootstrapped files
    (base,) = recipes.values() if isinstance(recipes, dict) else (recipes,)  # one stage per recipe in 0.3
    assert base.fromHeader.startswith("nvidia/cuda:")
    assert any("scikit-learn==1.5.1" in line for line in base.install)


def test_resolved_definition_builds_from_anywhere(tmp_path):
    text = containers.resolved(containers.definitions()["dummy"], tmp_path)
    assert f"From: {tmp_path}/base.sif" in text
    assert f"{containers.CONTAINERS.parent}/hpc_mle/agents/dummy.py /home/agent/dummy.py" in text
    assert containers.build_command("dummy", tmp_path) == [
        "apptainer", "build", "--fakeroot", f"{tmp_path}/dummy.sif", f"{tmp_path}/dummy.def"]


def test_containers_build_without_apptainer_explains_what_to_do(tmp_path):
    out = subprocess.run(["hpc-mle", "containers", "build", "dummy", "--output-dir", str(tmp_path)],
                         capture_output=True, text=True)
    if out.returncode == 0:
        pytest.skip("apptainer is installed here: the image was built")
    assert "apptainer is not on PATH" in out.stderr and "base -> dummy" in out.stderr
    assert "--image" in out.stderr
