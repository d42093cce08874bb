"""Files a site uses as shipped: container definitions, the nightly examples, slurm/dev/up.sh's refusal.

Nothing here builds an image or starts Slurm: the definitions are parsed, `containers build` runs against
a stub `apptainer`, and up.sh's check runs with stub `scontrol`/`sinfo` first on PATH.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from hpc_mle import containers

REPO = containers.CONTAINERS.parent
NIGHTLY = REPO / "slurm" / "nightly"
SITE_CHECK = REPO / "slurm" / "dev" / "site-slurm-check.sh"
DIGEST_FROM = re.compile(r"^docker\.io/library/[\w.-]+@sha256:[0-9a-f]{64}$")


def install_commands(definition: containers.Definition) -> list[list[str]]:
    """Each `pip install` / `uv pip install` of %post, continuation lines joined, split into words."""
    text = definition.sections.get("post", "").replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        words = line.split()
        if "install" in words and any(w.endswith("pip") for w in words[: words.index("install")]):
            commands.append(words[words.index("install") + 1:])
    return commands


def pins(path: Path) -> dict[str, str]:
    """name -> version of a constraints file; every entry must be `name==version`."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"{path}: {line!r} is not pinned with =="
            found[name.lower().replace("_", "-")] = version
    return found


def unpinned(path: Path, constraints: dict[str, str]) -> list[str]:
    """Requirements of `path` pinned neither with == there nor in the constraints."""
    loose = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        name = re.split(r"[<>=!~\[ ;]", line)[0].lower().replace("_", "-")
        if line and "==" not in line and name not in constraints:
            loose.append(name)
    return loose


def host_path(definition: containers.Definition, image_path: str) -> Path:
    """The repository file that %files copies to `image_path`."""
    for src, dst in definition.files():
        if dst == image_path:
            return (definition.path.parent / src).resolve()
    raise AssertionError(f"{definition.path}: nothing in %files lands at {image_path}")


def options(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, word in enumerate(args[:-1]) if word == flag]


def test_every_definition_pins_its_base_and_every_package():
    defs = containers.definitions()
    assert DIGEST_FROM.match(defs["base"].header["from"]), defs["base"].header["from"]
    for definition in defs.values():
        assert containers.check(definition) == [], definition.path
        if definition.header["bootstrap"] == "localimage":
            assert definition.header["from"] == "base.sif"
        else:
            assert DIGEST_FROM.match(definition.header["from"]), definition.path
        for args in install_commands(definition):
            packages = [w for i, w in enumerate(args) if not w.startswith("-")
                        and (i == 0 or args[i - 1] not in ("-r", "-c", "--python", "--exclude-newer"))]
            assert all("==" in p for p in packages), (definition.path, args)
            constraints = {}
            for c in options(args, "-c"):
                constraints |= pins(host_path(definition, c))
            for r in options(args, "-r"):
                loose = unpinned(host_path(definition, r), constraints)
                assert not loose, f"{definition.path}: {r} has {loose} without a pinned constraint"
            if "--python" in args:  # uv pip install --python VENV: no constraints file, a date instead
                assert options(args, "--exclude-newer"), f"{definition.path}: uv resolves without a date"
    assert len(install_commands(defs["base"])) == 2


def test_one_torch_stack_and_no_cuda_from_the_os_image():
    defs = containers.definitions()
    base_pins = pins(REPO / "containers" / "base-constraints.txt")
    assert base_pins["torch"] == "2.2.0" and base_pins["nvidia-cudnn-cu12"].startswith("8.9")
    for definition in defs.values():
        text = definition.path.read_text()
        assert "cudnn" not in definition.header.get("from", "").lower()
        assert "nvidia/cuda" not in text
        if definition.name != "base":
            assert not any(w.startswith("torch") for args in install_commands(definition) for w in args), \
                f"{definition.path} installs a second torch"
        for c in re.findall(r"^\s+(\S+-constraints\.txt) ", definition.sections.get("files", ""), re.M):
            agent_pins = pins(definition.path.parent / c)
            shared = {n for n in agent_pins if n.startswith(("torch", "nvidia-", "triton"))}
            assert {n: agent_pins[n] for n in shared} == {n: base_pins[n] for n in shared}, c
    for name in ("aide", "mlab"):
        post = defs[name].sections["post"]
        assert f"echo /opt/venv/lib/python3.11/site-packages > /opt/venvs/{name}/lib/python3.11/" in post


def fake_apptainer(bin_dir: Path, record: Path) -> None:
    """An `apptainer` that writes the build's environment and arguments and creates the .sif."""
    script = bin_dir / "apptainer"
    script.write_text(f"#!/bin/sh\nenv > {record}\necho \"ARGS $*\" >> {record}\n"
                      "for a; do case $a in *.sif) touch \"$a\";; esac; done\n")
    script.chmod(0o755)


def test_build_sets_apptainer_caches_beside_the_images(tmp_path, monkeypatch):
    out = tmp_path / "images"
    env = containers.build_environment(out, {"HOME": "/home/x"})
    assert env["APPTAINER_TMPDIR"] == str(out.resolve() / "apptainer-build" / "tmp")
    assert env["APPTAINER_CACHEDIR"] == str(out.resolve() / "apptainer-build" / "cache")
    kept = containers.build_environment(out, {"APPTAINER_CACHEDIR": "/scratch/c", "SINGULARITY_TMPDIR": "/s/t"})
    assert kept["APPTAINER_CACHEDIR"] == "/scratch/c" and "APPTAINER_TMPDIR" not in kept

    bin_dir, record = tmp_path / "bin", tmp_path / "record.txt"
    bin_dir.mkdir()
    fake_apptainer(bin_dir, record)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("APPTAINER_TMPDIR", raising=False)
    monkeypatch.delenv("SINGULARITY_TMPDIR", raising=False)
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "mine"))
    built = containers.build("base", out)
    assert built == [out.resolve() / "base.sif"]
    seen = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line and " " not in line)
    assert seen["APPTAINER_TMPDIR"] == str(out.resolve() / "apptainer-build" / "tmp")
    assert seen["APPTAINER_CACHEDIR"] == str(tmp_path / "mine")
    assert (out / "apptainer-build" / "tmp").is_dir()
    assert f"ARGS build --fakeroot {out.resolve()}/base.sif {out.resolve()}/base.def" in record.read_text()
    assert f"{REPO}/containers/base-constraints.txt /opt/hpc-mle/base-constraints.txt" in (out / "base.def").read_text()


SITE_FILES = ("site-nightly.sh", "site-nightly.yaml", "site-scrontab.example")


def test_site_nightly_uses_nothing_of_the_dev_cluster():
    for name in SITE_FILES:
        text = (NIGHTLY / name).read_text()
        assert "slurm/dev" not in text and "/tmp" not in text and "env.sh" not in text, name
    assert "cluster=dev" not in (NIGHTLY / "site-nightly.yaml").read_text()
    assert "site-nightly.sh" in (NIGHTLY / "site-scrontab.example").read_text()
    for name in ("crontab.example", "scrontab.example", "mini-nightly.yaml"):
        assert "DEVELOPMENT CLUSTER ONLY" in (NIGHTLY / name).read_text(), name
    subprocess.run(["bash", "-n", str(NIGHTLY / "site-nightly.sh")], check=True)


@pytest.mark.parametrize("mode, ok", [(0o600, True), (0o644, False)])
def test_site_nightly_reads_the_key_only_from_a_private_file(tmp_path, mode, ok):
    key = tmp_path / "key"
    key.write_text("sk-test-123\n")
    key.chmod(mode)
    out = subprocess.run(["bash", "-c", f'. "{NIGHTLY}/site-nightly.sh"; read_key; echo "key=$OPENAI_API_KEY"'],
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                                                               "HPC_MLE_KEY_FILE": str(key)})
    if ok:
        assert out.returncode == 0 and "key=sk-test-123" in out.stdout
    else:
        assert out.returncode == 1 and f"chmod 600 {key}" in out.stderr and "sk-test" not in out.stdout


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


PING_UP = 'case "$1" in ping) echo "Slurmctld(primary) at ctl01 is UP"; exit 0;; show) echo "ClusterName = {c}";; esac'
NO_SLURM = 'echo "slurm_load_ctl_conf error: Unable to contact slurm controller" >&2; exit 1'


@pytest.mark.parametrize("scontrol, sinfo, extra_env, expect_rc, expect", [
    (PING_UP.format(c="siteprod"), "exit 0", {}, 3, "scontrol ping"),
    (PING_UP.format(c="siteprod"), "exit 0", {"HPC_MLE_SLURM_IGNORE_SITE": "1"}, 0, "starting anyway"),
    (NO_SLURM, "echo debug", {}, 3, "sinfo"),
    (NO_SLURM, NO_SLURM, {}, 0, ""),
    (PING_UP.format(c="hpcmle"), "exit 0", {}, 0, ""),
    (PING_UP.format(c="siteprod"), "exit 0", {"SLURM_CONF": "/state/etc/slurm.conf"}, 0, ""),
], ids=["site-ping", "site-overridden", "site-sinfo", "no-slurm", "ours-running", "env-sourced"])
def test_up_sh_refuses_beside_a_site_slurm(tmp_path, scontrol, sinfo, extra_env, expect_rc, expect):
    stub(tmp_path, "scontrol", scontrol)
    stub(tmp_path, "sinfo", sinfo)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", **extra_env}
    out = subprocess.run(["bash", "-c", f'set -euo pipefail; . "{SITE_CHECK}"; '
                          'refuse_beside_site_slurm /state/etc/slurm.conf hpcmle; echo "would start"'],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == expect_rc, out.stderr
    assert expect in out.stderr
    assert ("would start" in out.stdout) == (expect_rc == 0)
    if expect_rc:
        assert "HPC_MLE_SLURM_IGNORE_SITE=1" in out.stderr


def test_up_sh_checks_before_pointing_slurm_conf_at_itself():
    text = (REPO / "slurm" / "dev" / "up.sh").read_text()
    check = text.index('refuse_beside_site_slurm "$ETC/slurm.conf" "$CLUSTER"')
    assert check < text.index("export SLURM_CONF=$ETC/slurm.conf") < text.index("pid_alive()")
    assert text.index("CLUSTER=hpcmle") < check
