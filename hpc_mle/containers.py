"""Apptainer images: check the definition files in `containers/` and build them.

spython parses definition files but only those that bootstrap from docker; agent images here
bootstrap from the locally built `base.sif`, so a small parser of our own reads the header and
sections of every file, and the checks below (sources of `%files` exist, a `localimage` base has its
own definition) run on all of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hpc_mle import paths
from hpc_mle.files import atomic_write_json, read_json

CONTAINERS = paths.REPO_ROOT / "containers"
BOOTSTRAPS = ("docker", "localimage", "library", "oras", "docker-daemon")


class DefinitionError(ValueError):
    pass


@dataclass(frozen=True)
class Definition:
    path: Path
    header: dict[str, str]
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    def files(self) -> list[tuple[str, str]]:
        """(source, destination) pairs of `%files`, sources relative to the definition's folder."""
        pairs = []
        for line in self.sections.get("files", "").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                src, _, dst = line.partition(" ")
                pairs.append((src, dst.strip() or src))
        return pairs


def parse(path: Path) -> Definition:
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        match = re.match(r"^%(\w+)", line)
        if match:
            current = match.group(1).lower()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition(":")
            if not sep:
                raise DefinitionError(f"{path}:{lineno}: expected 'Key: value' in the header, got {line!r}")
            header[key.strip().lower()] = value.strip()
    return Definition(path, header, {k: "\n".join(v) for k, v in sections.items()})


def check(definition: Definition) -> list[str]:
    """Problems with a definition file (empty list = fine)."""
    problems = []
    where = definition.path
    bootstrap = definition.header.get("bootstrap")
    if bootstrap not in BOOTSTRAPS:
        problems.append(f"{where}: 'Bootstrap: {bootstrap}' is not one of {', '.join(BOOTSTRAPS)}")
    if not definition.header.get("from"):
        problems.append(f"{where}: the header needs 'From:'")
    if bootstrap == "localimage":
        base = Path(definition.header.get("from", "")).with_suffix(".def")
        if not (where.parent / base).is_file():
            problems.append(f"{where}: builds on {definition.header.get('from')} but {base} does not exist")
    for src, _dst in definition.files():
        if not (where.parent / src).exists():
            problems.append(f"{where}: %files source {src} does not exist")
    return problems


def definitions() -> dict[str, Definition]:
    return {p.stem: parse(p) for p in sorted(CONTAINERS.glob("*.def"))}


def build_order(name: str, defs: Mapping[str, Definition] | None = None) -> list[str]:
    """The images to build for `name`, bases first (from containers/, or the definitions given)."""
    defs = definitions() if defs is None else defs
    if name not in defs:
        raise DefinitionError(f"no containers/{name}.def (known: {', '.join(defs)})")
    order = [name]
    while defs[order[0]].header.get("bootstrap") == "localimage":
        base = Path(defs[order[0]].header["from"]).stem
        if base in order or base not in defs:
            raise DefinitionError(f"{defs[order[0]].path}: its base {base}.def is missing or circular")
        order.insert(0, base)
    return order


def resolved(definition: Definition, output_dir: Path) -> str:
    """The definition with a localimage base and `%files` sources as absolute paths, buildable from anywhere."""
    lines, section = [], None
    for line in definition.path.read_text().splitlines():
        match = re.match(r"^%(\w+)", line)
        if match:
            section = match.group(1).lower()
        elif section is None and line.lower().startswith("from:") and definition.header.get("bootstrap") == "localimage":
            line = f"From: {Path(output_dir).resolve() / Path(definition.header['from']).name}"
        elif section == "files" and line.strip() and not line.lstrip().startswith("#"):
            src, _, dst = line.strip().partition(" ")
            line = f"    {(definition.path.parent / src).resolve()} {dst.strip() or src}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def build_command(name: str, output_dir: Path, fakeroot: bool = True) -> list[str]:
    """`apptainer build [--fakeroot] OUT/name.sif OUT/name.def` (the resolved copy written by `build`)."""
    cmd = ["apptainer", "build"]
    if fakeroot:
        cmd.append("--fakeroot")
    return cmd + [str(Path(output_dir) / f"{name}.sif"), str(Path(output_dir) / f"{name}.def")]


BUILD_DIR = "apptainer-build"  # in --output-dir: Apptainer's scratch (tmp/) and layer cache (cache/)
# Each variable Apptainer reads, with the legacy name it also honours and the folder we give it.
BUILD_LOCATIONS = (("APPTAINER_TMPDIR", "SINGULARITY_TMPDIR", "tmp"),
                   ("APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR", "cache"))


def build_environment(output_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for `apptainer build`, with scratch and cache beside the images.

    Apptainer defaults to /tmp (often a small RAM disk on login nodes) and $HOME/.apptainer (quota'd);
    a base image with torch needs several GB of both. Locations the user already set are kept.
    """
    env = dict(os.environ if environ is None else environ)
    for var, legacy, sub in BUILD_LOCATIONS:
        if not env.get(var) and not env.get(legacy):
            env[var] = str(Path(output_dir).resolve() / BUILD_DIR / sub)
    return env


HOW_TO_BUILD_ELSEWHERE = (
    "Build it on a machine where you may (a workstation with apptainer, or a cluster node that allows\n"
    "fakeroot):  apptainer build --fakeroot {name}.sif containers/{name}.def   (bases first: {order})\n"
    "then copy the .sif to shared storage on the cluster and pass it with --image (or 'image' in the\n"
    "scaffold config). Some sites offer 'apptainer build --remote' instead."
)


def build(name: str, output_dir: Path, fakeroot: bool = True) -> list[Path]:
    """Build `name` and the images it builds on into `output_dir`, bases first (an existing base is reused)."""
    order = build_order(name)
    if shutil.which("apptainer") is None:
        raise RuntimeError("apptainer is not on PATH here.\n" + HOW_TO_BUILD_ELSEWHERE.format(
            name=name, order=" -> ".join(order)))
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    env = build_environment(output_dir)
    for var, _legacy, _sub in BUILD_LOCATIONS:
        if var in env:
            Path(env[var]).mkdir(parents=True, exist_ok=True)
    built = []
    for image in order:
        target = output_dir / f"{image}.sif"
        if target.exists() and image != name:
            built.append(target)
            continue
        (output_dir / f"{image}.def").write_text(resolved(definitions()[image], output_dir))
        result = subprocess.run(build_command(image, output_dir, fakeroot), cwd=output_dir, env=env)
        if result.returncode != 0:
            hint = "" if not fakeroot else " If the site forbids fakeroot:\n" + HOW_TO_BUILD_ELSEWHERE.format(
                name=name, order=" -> ".join(order))
            raise RuntimeError(f"apptainer build of {image} failed (exit {result.returncode}).{hint}")
        built.append(target)
    return built


# ---------------------------------------------------------------- image digests, once per launch

DIGESTS = "image_digests.json"  # in the sweep folder: {image path: {digest, size, mtime_ns}}


def file_digest(image: Path) -> str:
    """sha256 of an image file, recorded so every result says exactly which image produced it."""
    h = hashlib.sha256()
    with open(image, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _identity(image: Path) -> dict[str, int]:
    st = os.stat(image)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def record_digests(sweep_dir: Path, images: set[Path]) -> dict[str, str]:
    """Hash each image once per launch (a SIF is GBs: hashing it at every attempt start reads it 64 times over
    on a shared filesystem) and keep the digests in the sweep folder; an unchanged image (same size and
    mtime as recorded) is not hashed again by a resume."""
    path = Path(sweep_dir) / DIGESTS
    known = read_json(path, {}) or {}
    for image in sorted(Path(i).resolve() for i in images):
        if not image.is_file():
            continue
        ident, old = _identity(image), known.get(str(image)) or {}
        if {k: old.get(k) for k in ident} != ident or not old.get("digest"):
            known[str(image)] = {"digest": file_digest(image), **ident}
    if known:
        atomic_write_json(path, known)
    return {k: v["digest"] for k, v in known.items()}


def recorded_digest(sweep_dir: Path, image: str | os.PathLike | None) -> str | None:
    """The launch's digest of `image`, if the file is still the one hashed (a stat, not a read); else None."""
    if not image:
        return None
    entry = (read_json(Path(sweep_dir) / DIGESTS, {}) or {}).get(str(Path(image).resolve()))
    try:
        same = entry is not None and {k: entry.get(k) for k in ("size", "mtime_ns")} == _identity(Path(image))
    except OSError:
        return None
    return entry["digest"] if same else None


# ---------------------------------------------------------------- the pins, checked by a real resolver
#
# No image is built here, but each pip (or uv) install step of a definition can be resolved for the image's own
# Python and platform with `pip install --dry-run --report`, from wheel metadata only: the step's packages must
# resolve as one set, the constraints must pin all of them, and where one venv sees another's packages (a .pth
# file) every requirement a package declares must hold across both.

PINS_PIP = (25, 3)  # the first pip whose --dry-run with fast-deps reads only metadata (range requests), no wheels
PYPI = ("--index-url", "https://pypi.org/simple")
GLIBC = {"jammy": 35, "22.04": 35, "noble": 39, "24.04": 39, "focal": 31, "20.04": 31}  # Ubuntu -> glibc 2.N
IGNORED_OPTIONS = {"--no-cache-dir", "-q", "--quiet", "--upgrade", "-U"}  # no effect on what is resolved


@dataclass(frozen=True)
class PipStep:
    """One `pip install` (or `uv pip install`) of a definition's %post, with image paths mapped to host files."""

    image: str
    env: str  # the venv it installs into, e.g. /opt/venv
    command: str  # as the definition writes it
    tool: str = "pip"  # or "uv"
    requirements: tuple[str, ...] = ()
    requirement_files: tuple[Path, ...] = ()
    constraint_files: tuple[Path, ...] = ()
    no_deps: bool = False
    exclude_newer: str | None = None


@dataclass
class Venv:
    path: str
    python: str  # "3.11"
    sees: list[str] = field(default_factory=list)  # venvs whose site-packages a .pth file adds, in order


@dataclass
class ImageSteps:
    name: str
    glibc_minor: int
    venvs: dict[str, Venv]
    steps: list[PipStep]


def _post_commands(definition: Definition) -> list[str]:
    """%post as one command per line (backslash continuations joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", definition.sections.get("post", ""))
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _venv_of(path: str, venvs: dict[str, Venv]) -> str | None:
    """The venv a path lies in (the longest matching venv folder)."""
    inside = [v for v in venvs if path == v or path.startswith(v.rstrip("/") + "/")]
    return max(inside, key=len) if inside else None


def _host_file(definition: Definition, image_path: str, lineno: str) -> Path:
    """The host file that %files copies to `image_path`."""
    for src, dst in definition.files():
        if dst == image_path:
            return (definition.path.parent / src).resolve()
    raise DefinitionError(f"{definition.path}: %post {lineno} installs from {image_path}, which no %files line "
                          f"puts into the image; add '<host file> {image_path}' to %files")


def _install_step(definition: Definition, tokens: list[str], at: int, env: str, tool: str, line: str,
                  where: str) -> PipStep:
    """Parse the options after `install` into a PipStep."""
    reqs, rfiles, cfiles, no_deps, newer = [], [], [], False, None
    rest = iter(tokens[at:])
    for tok in rest:
        if tok in ("-r", "--requirement", "-c", "--constraint", "--exclude-newer", "--python"):
            value = next(rest, None)
            if value is None:
                raise DefinitionError(f"{definition.path}: %post {where}: {tok} without a value")
            if tok in ("-r", "--requirement"):
                rfiles.append(_host_file(definition, value, where))
            elif tok in ("-c", "--constraint"):
                cfiles.append(_host_file(definition, value, where))
            elif tok == "--exclude-newer":
                newer = value
        elif tok == "--no-deps":
            no_deps = True
        elif tok.startswith("-"):
            if tok not in IGNORED_OPTIONS:
                raise DefinitionError(f"{definition.path}: %post {where}: `{tok}` is an install option check-pins "
                                      f"does not know; add it to containers.IGNORED_OPTIONS if it changes nothing "
                                      f"that is resolved")
        else:
            reqs.append(tok)
    return PipStep(definition.name, env, line, tool, tuple(reqs), tuple(rfiles), tuple(cfiles), no_deps, newer)


def _option(tokens: list[str], name: str) -> str | None:
    return tokens[tokens.index(name) + 1] if name in tokens[:-1] else None


def _read_post(definition: Definition, venvs: dict[str, Venv]) -> list[PipStep]:
    """Record the venvs %post creates and links, and return its install steps in order."""
    import shlex

    steps = []
    for n, line in enumerate(_post_commands(definition), 1):
        where = f"command {n}"
        tokens = shlex.split(line, comments=True)
        if not tokens:
            continue
        prog = Path(tokens[0]).name
        if re.fullmatch(r"python3\.\d+", prog) and tokens[1:3] == ["-m", "venv"]:
            venvs[tokens[-1]] = Venv(tokens[-1], prog.removeprefix("python"))
        elif prog == "uv" and tokens[1:2] == ["venv"]:
            venvs[tokens[-1]] = Venv(tokens[-1], _option(tokens, "--python") or "")
        elif prog == "echo" and ">" in tokens and tokens[-1].endswith(".pth"):
            into, seen = _venv_of(tokens[-1], venvs), _venv_of(tokens[1], venvs)
            if into and seen:
                venvs[into].sees.append(seen)
        elif prog == "pip" and tokens[1:2] == ["install"]:
            env = str(Path(tokens[0]).parent.parent)
            steps.append(_install_step(definition, tokens, 2, env, "pip", line, where))
        elif prog == "uv" and tokens[1:3] == ["pip", "install"]:
            env = str(Path(_option(tokens, "--python") or "").parent.parent)
            steps.append(_install_step(definition, tokens, 3, env, "uv", line, where))
        elif "pip" in tokens and "install" in tokens:
            raise DefinitionError(f"{definition.path}: %post {where}: an install check-pins cannot read: {line!r}; "
                                  f"write it as '<venv>/bin/pip install ...' or '<uv> pip install --python ...'")
    for step in steps:
        if step.env not in venvs:
            raise DefinitionError(f"{definition.path}: {step.command!r} installs into {step.env}, which no "
                                  f"'pythonX.Y -m venv' or 'uv venv --python X.Y' of this image or its bases creates")
    return steps


def _glibc_minor(definition: Definition) -> int:
    """glibc 2.N of an image built from Ubuntu, from the base image's label or From line."""
    text = " ".join([definition.sections.get("labels", ""), definition.header.get("from", "")])
    for release, minor in GLIBC.items():
        if f"ubuntu:{release}" in text:
            return minor
    raise DefinitionError(f"{definition.path}: cannot tell the image's glibc: name the Ubuntu release in "
                          f"%labels, e.g. 'org.hpc-mle.base-image docker.io/library/ubuntu:jammy-20240627.1' "
                          f"(known: {', '.join(GLIBC)})")


def pip_steps(name: str, defs: Mapping[str, Definition] | None = None) -> ImageSteps:
    """Every install step of image `name`, its bases' first, with the venvs they install into."""
    defs = definitions() if defs is None else defs
    venvs: dict[str, Venv] = {}
    steps: list[PipStep] = []
    glibc = None
    for image in build_order(name, defs):
        if defs[image].header.get("bootstrap") != "localimage":
            glibc = _glibc_minor(defs[image])
        steps += _read_post(defs[image], venvs)
    return ImageSteps(name, glibc or 0, venvs, steps)



@dataclass
class Resolution:
    """What the resolver made of one step: the packages (name -> version, declared requirements, extras asked
    for), or the conflict as pip or uv said it."""

    step: PipStep
    ok: bool
    seconds: float
    packages: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    error: str = ""
    unpinned: list[str] = field(default_factory=list)
    downloaded_mb: float = 0.0  # whole wheels pip fetched (0 when it read only metadata)
    checked: bool = True  # False: installed --no-deps or by uv, so its declared requirements are not checked


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def pinned_names(step: PipStep) -> set[str]:
    """Packages the step holds at one exact version: `name==X` in its constraints, requirement files or command."""
    from packaging.requirements import InvalidRequirement, Requirement

    pinned = set()
    lines = [*step.requirements, *(ln for f in (*step.constraint_files, *step.requirement_files)
                                   for ln in _requirement_lines(f))]
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            pinned.add(_canon(req.name))
    return pinned


def platform_tags(glibc_minor: int) -> list[str]:
    """Every manylinux tag an image with glibc 2.N runs (pip takes --platform literally, with no older ones)."""
    tags = [f"manylinux_2_{m}_x86_64" for m in range(glibc_minor, 4, -1)]
    return tags + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def pip_version(python: str) -> tuple[int, ...]:
    out = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60).stdout
    match = re.match(r"pip (\d+)\.(\d+)", out)
    if not match:
        raise RuntimeError(f"{python} -m pip --version said {out!r}: is pip installed for {python}?")
    return int(match.group(1)), int(match.group(2))


def _clean_env() -> dict[str, str]:
    """This machine's pip settings (its config files, PIP_* variables: extra indexes, constraints) do not exist in
    the image, so they are left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1"}


def pip_command(step: PipStep, python_version: str, glibc_minor: int, pip_python: str, index: list[str],
                workdir: Path) -> list[str]:
    """The dry run that resolves `step` for the image: its Python and platform, wheels only, nothing installed."""
    cmd = [pip_python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report",
           str(workdir / "report.json"), "--only-binary=:all:", "--python-version", python_version,
           "--implementation", "cp", *(a for t in platform_tags(glibc_minor) for a in ("--platform", t)),
           "--target", str(workdir / "target"), "--no-cache-dir", "--use-feature=fast-deps", "--progress-bar",
           "off", "--disable-pip-version-check", *index]
    cmd += ["--no-deps"] if step.no_deps else []
    cmd += [a for f in step.requirement_files for a in ("-r", str(f))]
    cmd += [a for f in step.constraint_files for a in ("-c", str(f))]
    return cmd + list(step.requirements)


def uv_command(step: PipStep, python_version: str, glibc_minor: int, uv: str, index: list[str], workdir: Path
               ) -> list[str]:
    """`uv pip compile` of a uv step (requirements on stdin), for the image's Python and platform. Source
    distributions are built for their metadata, as the step's install would; uv's cache is the temporary one."""
    cmd = [uv, "pip", "compile", "-", "--python-version", python_version, "--python-platform",
           f"x86_64-manylinux_2_{min(glibc_minor, 40)}", "--no-header", "--no-annotate", "--quiet",
           "--cache-dir", str(workdir / "uv-cache"), *index]
    cmd += ["--exclude-newer", step.exclude_newer] if step.exclude_newer else []
    cmd += ["--no-deps"] if step.no_deps else []
    cmd += [str(f) for f in step.requirement_files]
    return cmd + [a for f in step.constraint_files for a in ("-c", str(f))]


NOISE = ("Looking in", "Processing", "Collecting", "Downloading", "Obtaining", "INFO:", "WARNING:", "Requirement already")


def _conflict(text: str) -> str:
    """The part of pip's or uv's output that says why nothing resolved (pip's advice on what to try is left out)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("To fix this you could try"):
            break
        if line.strip() and not line.strip().startswith(NOISE) and "dealing-with-dependency-conflicts" not in line:
            lines.append(line)
    return "\n".join(lines[:20])


def _downloaded_mb(output: str) -> float:
    """Whole wheels pip says it fetched ("Downloading x.whl (755.5 MB)"); metadata files do not count."""
    sizes = re.findall(r"Downloading \S+\.whl \(([\d.]+) (kB|MB|GB)\)", output)
    return sum(float(n) * {"kB": 1e-3, "MB": 1, "GB": 1e3}[unit] for n, unit in sizes)


def resolve_step(step: PipStep, image: ImageSteps, pip_python: str, index: list[str], uv: str | None = None
                 ) -> Resolution:
    """Resolve one step for real (pip or uv); nothing is installed and no wheel is kept."""
    import json
    import tempfile
    import time

    python_version = image.venvs[step.env].python
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hpc-mle-pins-") as tmp:
        if step.tool == "uv":
            if uv is None:
                return Resolution(step, False, 0.0, error="NOT CHECKED: uv is not on PATH (pip install uv into any "
                                  "venv and put its bin/ on PATH)", checked=False)
            stdin = "\n".join(step.requirements) + "\n"
            proc = subprocess.run(uv_command(step, python_version, image.glibc_minor, uv, index, Path(tmp)),
                                  input=stdin,
                                  capture_output=True, text=True, env=_clean_env(), cwd=tmp, timeout=1800)
            pins = [ln.split("==") for ln in proc.stdout.splitlines() if "==" in ln and not ln.startswith("#")]
            packages = {_canon(n.split("[")[0]): (v.split(";")[0].strip(), (), ()) for n, v in pins}
            result = Resolution(step, proc.returncode == 0, time.monotonic() - t0, packages, checked=False)
        else:
            work = Path(tmp)
            proc = subprocess.run(pip_command(step, python_version, image.glibc_minor, pip_python, index, work),
                                  capture_output=True, text=True, env=_clean_env(), cwd=tmp, timeout=1800)
            packages = {}
            if proc.returncode == 0:
                for item in json.loads((work / "report.json").read_text())["install"]:
                    meta = item["metadata"]
                    packages[_canon(meta["name"])] = (meta["version"], tuple(meta.get("requires_dist") or ()),
                                                      tuple(item.get("requested_extras") or ()))
            result = Resolution(step, proc.returncode == 0, time.monotonic() - t0, packages,
                                downloaded_mb=_downloaded_mb(proc.stdout), checked=not step.no_deps)
    if not result.ok:
        result.error = _conflict(proc.stderr + "\n" + proc.stdout)
    pinned = pinned_names(step)
    result.unpinned = sorted(n for n in result.packages if n not in pinned)
    return result


def _markers(python_version: str) -> dict[str, str]:
    """PEP 508 marker values inside the image (Linux x86_64, CPython X.Y)."""
    return {"python_version": python_version, "python_full_version": f"{python_version}.0",
            "implementation_name": "cpython", "implementation_version": f"{python_version}.0",
            "platform_python_implementation": "CPython", "platform_system": "Linux", "sys_platform": "linux",
            "platform_machine": "x86_64", "os_name": "posix"}


def environment(image: ImageSteps, results: list[Resolution], env: str, seen: tuple[str, ...] = ()
                ) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...], bool, str]]:
    """What a venv's Python imports: name -> (version, requirements, extras, checked, venv). The venvs it sees
    through a .pth file come after its own site-packages on sys.path, so its own steps (in order) win."""
    packages: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], bool, str]] = {}
    for lower in image.venvs[env].sees:
        if lower not in seen:
            packages.update(environment(image, results, lower, (*seen, env)))
    for r in results:
        if r.step.env == env:
            packages.update({n: (*p, r.checked, env) for n, p in r.packages.items()})
    return packages


def unmet_requirements(image: ImageSteps, results: list[Resolution], env: str) -> list[str]:
    """Every requirement a package of the venv declares (its extras' too) that the venv does not meet."""
    from packaging.requirements import Requirement

    packages = environment(image, results, env)
    markers = _markers(image.venvs[env].python)
    todo = {(n, "") for n in packages} | {(n, e) for n, p in packages.items() for e in p[2]}
    done: set[tuple[str, str]] = set()
    problems: set[str] = set()
    while todo:
        name, extra = todo.pop()
        done.add((name, extra))
        version, requires, _extras, checked, _where = packages[name]
        for text in requires if checked else ():
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**markers, "extra": extra}):
                continue
            if extra and (req.marker is None or "extra" not in str(req.marker)):
                continue  # checked on the package's own pass
            who = f"{name} {version}" + (f" [{extra}]" if extra else "")
            dep = packages.get(_canon(req.name))
            if dep is None:
                problems.add(f"{who} needs {req}, which {env} does not have")
            elif not req.specifier.contains(dep[0], prereleases=True):
                problems.add(f"{who} needs {req}; {env} has {req.name} {dep[0]} (installed into {dep[4]})")
            else:
                todo |= {(_canon(req.name), e) for e in req.extras} - done
    return sorted(problems)


@dataclass
class PinReport:
    image: ImageSteps
    results: list[Resolution]
    unmet: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results) and not any(self.unmet.values())


def check_pins(names: list[str], pip_python: str, index: list[str] | None = None, uv: str | None = None,
               allow_downloads: bool = False, defs: Mapping[str, Definition] | None = None) -> list[PinReport]:
    """Resolve every install step of each image (a base's steps once for all), then check each venv as a whole."""
    index = list(PYPI if index is None else index)
    if "--no-index" not in index and not allow_downloads and pip_version(pip_python) < PINS_PIP:
        raise RuntimeError(
            f"{pip_python} has pip {'.'.join(map(str, pip_version(pip_python)))}: before pip "
            f"{'.'.join(map(str, PINS_PIP))} a dry run downloads every wheel whole (torch and its CUDA wheels: "
            f"~2.5 GB per image) when the index does not advertise the metadata files. Fix: python3 -m venv "
            f"/tmp/pins && /tmp/pins/bin/pip install 'pip>={'.'.join(map(str, PINS_PIP))}', then --python "
            f"/tmp/pins/bin/python (or --allow-downloads to fetch them anyway; nothing is kept)")
    done: dict[PipStep, Resolution] = {}
    reports = []
    for name in names:
        image = pip_steps(name, defs)
        results = []
        for step in image.steps:
            if step not in done:
                done[step] = resolve_step(step, image, pip_python, index, uv)
            results.append(done[step])
        unmet = {env: unmet_requirements(image, results, env) for env in image.venvs
                 if all(r.ok for r in results if r.step.env == env)}
        reports.append(PinReport(image, results, unmet))
    return reports


def format_report(report: PinReport) -> list[str]:
    """The lines `hpc-mle containers check-pins` prints for one image."""
    image = report.image
    lines = [f"{image.name}: {'OK' if report.ok else 'PROBLEMS'} (manylinux x86_64, glibc 2.{image.glibc_minor})"]
    for r in report.results:
        command = re.sub(r"\s+", " ", r.step.command)
        head = f"  [{r.step.image}] {r.step.env} (Python {image.venvs[r.step.env].python}): " + (
            command if len(command) <= 90 else command[:87] + "...")
        if r.ok:
            fetched = f"; {r.downloaded_mb:.0f} MB of whole wheels fetched, none kept" if r.downloaded_mb >= 1 else ""
            lines.append(f"{head}\n      resolved: {len(r.packages)} packages in {r.seconds:.1f} s{fetched}")
        elif r.error.startswith("NOT CHECKED"):
            lines.append(f"{head}\n      {r.error}")
        else:
            lines.append(f"{head}\n      NOT RESOLVED:\n" + "\n".join(f"        {ln}" for ln in r.error.splitlines()))
        if r.unpinned:
            held = f" (held only by --exclude-newer {r.step.exclude_newer})" if r.step.exclude_newer else ""
            names = ", ".join(r.unpinned) if len(r.unpinned) <= 12 else ", ".join(r.unpinned[:12]) + ", ..."
            lines.append(f"      unpinned{held}: {len(r.unpinned)}: {names}")
    for env, problems in report.unmet.items():
        sees = image.venvs[env].sees
        scope = f"{env} (with {', '.join(sees)})" if sees else env
        packages = environment(image, report.results, env)
        unchecked = sum(1 for p in packages.values() if not p[3])
        lines.append(f"  {scope}: {len(packages)} packages; " + (
            "every declared requirement met" if not problems else f"{len(problems)} unmet:") + (
            f" ({unchecked} installed by uv or with --no-deps: their own requirements not checked)" if unchecked
            else ""))
        lines += [f"      {p}" for p in problems]
    return lines
