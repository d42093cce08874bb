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


def build_order(name: str) -> list[str]:
    """The images to build for `name`, bases first."""
    defs = definitions()
    if name not in defs:
        raise DefinitionError(f"no containers/{name}.def (known: {', '.join(defs)})")
    order: list[str] = []
    while name not in order:
        order.insert(0, name)
        d = defs[name]
        if d.header.get("bootstrap") != "localimage":
            break
        name = Path(d.header["from"]).stem
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
