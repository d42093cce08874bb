"""`hpc-mle containers check-pins`: each image's pip steps, read from the shipped definitions, and a real pip's
verdict on them, offline, from a folder of tiny wheels this test writes (no network: the run against PyPI is
`hpc-mle containers check-pins --python <a pip >= 25.3>`, see docs/installation.md).
"""

from __future__ import annotations

import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpc_mle import containers, paths
from hpc_mle.cli import main


def test_the_shipped_definitions_read_as_their_pip_steps():
    steps = {name: containers.pip_steps(name) for name in containers.definitions()}
    base = steps["base"]
    assert base.glibc_minor == 35 and base.venvs["/opt/venv"].python == "3.11"
    assert [s.requirements[:1] for s in base.steps] == [("pip==24.2",), ("numpy==1.26.4",)]
    ml = base.steps[1]
    assert ml.constraint_files == (containers.CONTAINERS / "base-constraints.txt",)
    assert {"torch==2.2.0", "transformers==5.24.0", "timm==1.0.31"} <= set(ml.requirements)
    assert containers.pinned_names(ml) >= {"torch", "nvidia-cudnn-cu12", "pyarrow", "typing-extensions"}
    for name in ("dummy", "baseline"):
        assert steps[name].steps == base.steps  # nothing of their own to install

    aide = steps["aide"]
    assert aide.venvs["/opt/venvs/aide"].sees == ["/opt/venv"]  # the base venv through a .pth file
    own = [s for s in aide.steps if s.image == "aide"]
    assert [(s.env, s.no_deps) for s in own] == [("/opt/venvs/aide", False), ("/opt/venvs/aide", True),
                                                  ("/opt/venvs/aide", False)]
    agent = paths.REPO_ROOT / "hpc_mle" / "agents" / "aide"
    assert own[1].requirement_files == (agent / "requirements-nodeps.txt",)
    assert own[2].requirement_files == (agent / "requirements.txt",)
    assert own[2].constraint_files == (containers.CONTAINERS / "aide-constraints.txt",)

    mlab = [s for s in steps["mlab"].steps if s.image == "mlab"]
    assert mlab[-1].requirement_files[0].name == "image-requirements.txt"

    oh = steps["openhands"]
    uv = [s for s in oh.steps if s.tool == "uv"]
    assert oh.venvs["/opt/venvs/openhands"].python == "3.12" and oh.venvs["/opt/venvs/openhands"].sees == []
    assert [(s.env, s.requirements, s.exclude_newer) for s in uv] == [
        ("/opt/venvs/openhands", ("openhands-ai==0.62.0",), "2026-11-30T00:00:00Z")]
    assert [s.requirements for s in oh.steps if s.image == "openhands" and s.tool == "pip"] == [("uv==0.13.9",)]


def test_the_dry_run_is_the_images_python_and_platform(tmp_path):
    image = containers.pip_steps("aide")
    step = image.steps[-1]
    cmd = containers.pip_command(step, "3.11", image.glibc_minor, "py", list(containers.PYPI), tmp_path)
    assert cmd[:6] == ["py", "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    assert {"--only-binary=:all:", "--use-feature=fast-deps", "--no-cache-dir"} <= set(cmd)
    assert cmd[cmd.index("--python-version") + 1] == "3.11" and cmd[cmd.index("--target") + 1] == str(tmp_path / "target")
    platforms = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--platform"]
    # jammy's glibc 2.35 and every older manylinux tag (torch 2.2.0 ships manylinux1 wheels only); nothing newer
    assert {"manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(
        platforms) and "manylinux_2_36_x86_64" not in platforms
    assert cmd[-5:] == ["-r", str(step.requirement_files[0]), "-c", str(step.constraint_files[0]), "typer==0.24.2"]


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A real (tiny, pure-Python) wheel: one module and its dist-info."""
    dist = f"{name}-{version}.dist-info"
    meta = "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{name}/__init__.py": "",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{meta}",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hpc-mle-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    _wheel(folder, "alpha", "1.0", ("beta>=2",))
    _wheel(folder, "beta", "1.0")
    _wheel(folder, "beta", "2.0")
    return folder


BASE = """\
Bootstrap: docker
From: docker.io/library/ubuntu@sha256:{digest}

%labels
    org.hpc-mle.base-image docker.io/library/ubuntu:jammy-20240627.1

%files
    c.txt /opt/c.txt

%post
    python3.11 -m venv /opt/venv
    /opt/venv/bin/pip install --no-cache-dir -c /opt/c.txt \\
        alpha==1.0
"""

CHILD = """\
Bootstrap: localimage
From: base.sif

%post
    python3.11 -m venv /opt/venvs/x
    echo /opt/venv/lib/python3.11/site-packages > /opt/venvs/x/lib/python3.11/site-packages/base.pth
    /opt/venvs/x/bin/pip install beta==1.0
"""


def _definitions(folder: Path, constraints: str, child: bool) -> Path:
    folder.mkdir()
    (folder / "base.def").write_text(BASE.format(digest="0" * 64))
    (folder / "c.txt").write_text(constraints)
    if child:
        (folder / "child.def").write_text(CHILD)
    return folder


def test_check_pins_reports_unpinned_packages_and_an_unmet_requirement_across_venvs(tmp_path, wheels, monkeypatch):
    monkeypatch.setattr(containers, "CONTAINERS", _definitions(tmp_path / "defs", "alpha==1.0\n", child=True))
    result = CliRunner().invoke(main, ["containers", "check-pins", "--find-links", str(wheels)])
    out = result.output
    assert result.exit_code == 1, out
    assert "base: OK" in out and "resolved: 2 packages" in out
    assert "unpinned: 1: beta" in out  # beta came in through alpha; c.txt does not hold it
    # child: its venv sees the base's alpha 1.0, which needs beta>=2, and installs beta 1.0 over it
    assert "child: PROBLEMS" in out and "/opt/venvs/x (with /opt/venv): 2 packages; 1 unmet:" in out
    assert "alpha 1.0 needs beta>=2; /opt/venvs/x has beta 1.0 (installed into /opt/venvs/x)" in out


def test_check_pins_says_the_conflict_when_the_constraints_cannot_hold(tmp_path, wheels):
    defs = {d.stem: containers.parse(d) for d in _definitions(tmp_path / "defs", "alpha==1.0\nbeta==1.0\n",
                                                              child=False).glob("*.def")}
    [report] = containers.check_pins(["base"], sys.executable, ["--no-index", "--find-links", str(wheels)], defs=defs)
    [result] = report.results
    assert not report.ok and not result.ok and result.packages == {}
    assert "beta" in result.error and ("conflict" in result.error.lower() or "ResolutionImpossible" in result.error)
    assert "NOT RESOLVED" in "\n".join(containers.format_report(report))


def test_an_install_from_a_file_the_image_lacks_is_refused(tmp_path):
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "base.def").write_text(textwrap.dedent(BASE.format(digest="0" * 64)).replace(
        "-c /opt/c.txt", "-r /opt/missing.txt"))
    (folder / "c.txt").write_text("")
    with pytest.raises(containers.DefinitionError, match="/opt/missing.txt, which no %files line"):
        containers.pip_steps("base", {"base": containers.parse(folder / "base.def")})
