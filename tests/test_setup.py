"""Setup for everyone: the Makefile's venv decision, the bubblewrap check before any attempt, the note
`make test` ends with, and the README's first screen (its commands and override names are real).

The full path (`make run` as a non-root user with Debian's /usr/bin/python3, pip install included) takes
minutes and is recorded in the note; here only its decisions run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_mle import bootstrap, plan, preflight, sandbox

REPO = Path(__file__).resolve().parents[1]
MINI_ONE = ["scaffold=dummy", "benchmark.competitions=[mini-churn]"]


# ------------------------------------------------------------------ which Python `make` installs into

def test_venv_needed_for_an_externally_managed_python(tmp_path):
    (tmp_path / bootstrap.MARKER).write_text("[externally-managed]\n")
    reason = bootstrap.venv_reason(tmp_path, euid=0, in_venv=False)
    assert "externally managed (PEP 668" in reason and str(tmp_path / bootstrap.MARKER) in reason
    assert bootstrap.venv_reason(tmp_path, euid=0, in_venv=True) == ""  # an active venv is used as it is


def test_venv_needed_for_a_non_root_user_only(tmp_path):
    assert bootstrap.venv_reason(tmp_path, euid=1000, in_venv=False).startswith("not root")
    assert bootstrap.venv_reason(tmp_path, euid=0, in_venv=False) == ""  # root, unmarked: today's behaviour


def make_dry(target: str, **variables: str) -> str:
    """What `make -n TARGET` would run (nothing runs)."""
    args = ["make", "-n", "-C", str(REPO), target, *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_makefile_installs_into_a_project_venv_for_debians_python(tmp_path):
    debian = Path("/usr/bin/python3")
    stdlib = subprocess.run([str(debian), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                            capture_output=True, text=True).stdout.strip() if debian.exists() else ""
    if not (stdlib and (Path(stdlib) / bootstrap.MARKER).is_file()):
        pytest.skip("no externally managed /usr/bin/python3 here")
    out = make_dry("run", SYSTEM_PYTHON=str(debian), VENV=str(tmp_path / "venv"))
    assert f"{debian} -m venv {tmp_path / 'venv'}" in out
    assert f"{tmp_path / 'venv'}/bin/python -m pip install -q -e '.[dev]'" in out
    assert f"{tmp_path / 'venv'}/bin/python -m hpc_mle.launch" in out
    assert not (tmp_path / "venv").exists()  # -n: nothing created


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_makefile_keeps_a_python_it_may_install_into():
    if bootstrap.current_venv_reason():
        pytest.skip("this Python needs a venv itself")
    out = make_dry("run", SYSTEM_PYTHON=sys.executable)
    assert f"{sys.executable} -m pip install -q -e '.[dev]'" in out and "-m venv" not in out
    assert "bash slurm/dev/down.sh" in make_dry("down")


# ------------------------------------------------------------------ bubblewrap missing: one message, before any attempt

def test_missing_bwrap_is_a_problem_locally_and_a_warning_for_slurm(tmp_path):
    cfgs = plan.compose_all(plan.expand([*MINI_ONE, f"output_root={tmp_path}"], True))
    no_bwrap = {"PATH": str(tmp_path)}  # an empty folder: bwrap is not there
    lines, (problem,) = preflight.sandbox_check(cfgs, "local", no_bwrap)
    assert lines == ["sandbox bwrap: NOT FOUND"] and not problem.warning
    assert "apt-get install bubblewrap" in problem.fix and "sandbox=none" in problem.fix
    _, (warning,) = preflight.sandbox_check(cfgs, "slurm", no_bwrap)
    assert warning.warning and "compute nodes may differ" in warning.what
    bwrap = tmp_path / "bwrap"
    bwrap.write_text("#!/bin/sh\n")
    bwrap.chmod(0o755)
    assert preflight.sandbox_check(cfgs, "local", no_bwrap) == ([f"sandbox bwrap: {bwrap}"], [])
    none_cfgs = plan.compose_all(plan.expand([*MINI_ONE, "sandbox=none", f"output_root={tmp_path}"], True))
    assert preflight.sandbox_check(none_cfgs, "local", {"PATH": ""}) == ([], [])


def test_launch_without_bwrap_stops_before_any_attempt(tmp_path):
    bin_dir = tmp_path / "bin"  # only this Python on PATH: no bwrap
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(bin_dir)}
    runs, data = tmp_path / "runs", tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "hpc_mle.launch", *MINI_ONE, f"output_root={runs}",
                           f"data_dir={data}"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "sandbox=bwrap but bubblewrap (bwrap) is not on this node's PATH" in out
    assert "apt-get install bubblewrap" in out and "Traceback" not in out
    assert not list(runs.rglob("status.json")) and not data.exists()  # no attempt started, nothing prepared


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="no bubblewrap here")
def test_a_venv_under_tmp_stays_visible_beside_the_agents_own_tmp(tmp_path):
    """A clone in /tmp has its .venv there; the agent's /tmp (its scratch folder) must not cover it."""
    venv = tmp_path / "clone" / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (next(venv.glob("lib/python3*/site-packages")) / "venv_marker.py").write_text("WHERE = 'the venv'\n")
    scratch = tmp_path / "scratch-tmp"
    scratch.mkdir()
    plan = sandbox.Plan(argv=(str(venv / "bin" / "python"), "-c", "import venv_marker; print(venv_marker.WHERE)"),
                        mounts=(sandbox.Mount(scratch, "/tmp", writable=True),), env={},
                        extra_ro=(*sandbox.python_dirs(), venv.resolve()))
    fd = os.memfd_create("env")
    os.write(fd, sandbox.bwrap_env_args({"PATH": "/usr/bin:/bin"}))
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        proc = subprocess.run(sandbox.bwrap_command(plan, args_fd=fd), pass_fds=(fd,), capture_output=True,
                              text=True, timeout=60)
    finally:
        os.close(fd)
    assert proc.stdout.strip() == "the venv", proc.stderr


# ------------------------------------------------------------------ what `make test` says about the dev cluster

def test_cluster_note_says_what_was_left_running(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert not bootstrap.cluster_up(tmp_path)
    assert bootstrap.cluster_note("down", False, tmp_path).startswith("No development Slurm cluster is running")
    (run / "slurmctld.pid").write_text(f"{os.getpid()}\n")  # a live process stands in for slurmctld
    assert bootstrap.cluster_up(tmp_path)
    started = bootstrap.cluster_note("down", True, tmp_path)
    assert started.startswith("make test started a development Slurm cluster") and "make down" in started
    assert "was already running" in bootstrap.cluster_note("up", True, tmp_path)


# ------------------------------------------------------------------ the README's first screen and docs/

README = (REPO / "README.md").read_text()
FIRST_SCREEN = "\n".join(README.splitlines()[:45])  # about one screen
CONTENTS = README.split("\n## Libraries")[0]  # the first screen and the list of docs/ pages


def test_first_screen_has_the_two_commands_and_the_papers_setup():
    for text in ("make run", "make test", "make down", ".venv", "scaffold=aide", "runtime=24h"):
        assert text in FIRST_SCREEN, text
    assert len(CONTENTS.splitlines()) < 60 and "(docs/installation.md)" in CONTENTS
    assert "make test" in (REPO / ".ci" / "run").read_text()  # CI runs the README's test command


def test_readme_overrides_name_real_config_options():
    """Every `group=option` the README's commands use is a file in conf/ (a typo would fail at launch)."""
    groups = {p.name for p in (REPO / "conf").iterdir() if p.is_dir()}
    used = set(re.findall(r"\b(" + "|".join(groups) + r")=([\w.,-]+)", README))
    assert {g for g, _ in used} >= {"scaffold", "runtime", "model", "hardware", "benchmark", "cluster"}
    for group, options in used:
        for option in options.split(","):
            if option and not option.startswith("..."):
                assert (REPO / "conf" / group / f"{option}.yaml").is_file(), f"README: {group}={option}"


def test_docs_are_listed_and_self_contained():
    linked = set(re.findall(r"\]\((docs/[\w./-]+\.md)\)", CONTENTS))
    pages = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert linked == pages and len(pages) >= 8  # every page listed, every link a page
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        text = path.read_text()
        assert "shared/reference" not in text and "facts §" not in text, path
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):  # relative links resolve in the repo
            assert (path.parent / target).exists(), f"{path.name}: link {target}"
