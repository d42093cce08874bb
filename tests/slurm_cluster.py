"""Access to the development Slurm cluster (slurm/dev/) for tests.

`ensure_cluster()` returns an environment whose SLURM_CONF points at the cluster, starting the cluster
with `slurm/dev/up.sh` when this machine can (root with apt-get). When it cannot, it returns None and
leaves the reason in `ensure_cluster.reason`; under CI (`CI=true`) it raises instead, because CI must
run the Slurm tests rather than skip them.

`slurm_env` is the fixture built on it (tests import it: `from slurm_cluster import slurm_env  # noqa: F401`);
it also cancels what a test's sweeps left in the queue, so the next test finds the node's CPUs free.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UP_SCRIPT = REPO / "slurm" / "dev" / "up.sh"
UP_TIMEOUT_S = 480
READY_STATES = {"idle", "mixed", "allocated", "completing"}


class ClusterUnavailable(RuntimeError):
    """The dev cluster is not up and could not be brought up where it must be (CI)."""


def state_dir() -> Path:
    """The cluster's state dir, as up.sh picks it."""
    return Path(os.environ.get("HPC_MLE_SLURM_DIR", "/tmp/hpc-mle-slurm"))


def cluster_env() -> dict[str, str]:
    """A copy of this process's environment pointed at the dev cluster (for subprocess `env=`)."""
    env = dict(os.environ)
    env["SLURM_CONF"] = str(state_dir() / "etc" / "slurm.conf")
    path = env.get("PATH", "")
    if "/usr/sbin" not in path.split(os.pathsep):
        env["PATH"] = f"{path}{os.pathsep}/usr/sbin" if path else "/usr/sbin"
    return env


def _pid_alive(pid_file: Path) -> bool:
    """True when the pid file names a live process."""
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except PermissionError:  # alive, but another user's (the daemons run as root)
        return True
    except (OSError, ValueError):
        return False
    return True


def node_states(env: dict[str, str]) -> list[str]:
    """Node states as sinfo reports them; empty when sinfo is missing or the controller is down."""
    if not shutil.which("sinfo", path=env.get("PATH")):
        return []
    # Without a config, or with up.sh's slurmctld gone, sinfo would only retry for ~10 s and fail.
    if not Path(env["SLURM_CONF"]).is_file() or not _pid_alive(state_dir() / "run" / "slurmctld.pid"):
        return []
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return []
    if out.returncode != 0:
        return []
    return out.stdout.split()


def cluster_ready(env: dict[str, str]) -> bool:
    """True when sinfo answers and at least one node can take jobs."""
    return any(state.rstrip("*~#") in READY_STATES for state in node_states(env))


def _bring_up(env: dict[str, str]) -> str | None:
    """Runs up.sh with output in the state dir's up.log; returns None on success, else the reason."""
    log_path = state_dir() / "up.log"
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {log_path.parent}: {exc}"
    # A file, not a pipe: daemons that inherit a pipe would keep it open and block the read.
    with log_path.open("ab") as log:
        try:
            proc = subprocess.run(
                ["bash", str(UP_SCRIPT)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=UP_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return f"slurm/dev/up.sh did not finish within {UP_TIMEOUT_S} s; see {log_path}"
    if proc.returncode != 0:
        return f"slurm/dev/up.sh failed (exit {proc.returncode}); see {log_path}"
    if not cluster_ready(env):
        return f"slurm/dev/up.sh finished but sinfo shows no usable node; see {log_path}"
    return None


_tried = False


def ensure_cluster() -> dict[str, str] | None:
    """The dev cluster's environment, starting the cluster if needed; None (see `.reason`) if impossible.

    Raises ClusterUnavailable instead of returning None when CI=true. The attempt to start the cluster
    is made once per process; later calls repeat the first answer unless the cluster came up meanwhile.
    """
    global _tried
    env = cluster_env()
    if cluster_ready(env):
        ensure_cluster.reason = ""
        return env
    if _tried:
        reason = ensure_cluster.reason or "the Slurm dev cluster is not up"
    else:
        _tried = True
        if os.geteuid() != 0:
            reason = "the Slurm dev cluster is not up, and starting it needs root (run slurm/dev/up.sh)"
        elif shutil.which("apt-get") is None and shutil.which("slurmctld", path=env["PATH"]) is None:
            reason = "the Slurm dev cluster is not up, and neither Slurm nor apt-get is installed here"
        else:
            reason = _bring_up(env)
            if reason is None:
                ensure_cluster.reason = ""
                return env
    ensure_cluster.reason = reason
    if os.environ.get("CI", "").lower() == "true":
        raise ClusterUnavailable(f"CI must run the Slurm tests, but: {reason}")
    return None


ensure_cluster.reason = ""


def require_cluster() -> dict[str, str]:
    """Like ensure_cluster, but skips the calling test (outside CI) when there is no cluster."""
    env = ensure_cluster()
    if env is None:
        pytest.skip(ensure_cluster.reason)
    return env


def sweep_folders(root: Path) -> list[Path]:
    """Every sweep folder (one with a manifest) up to three levels under `root`."""
    from hpc_mle import plan

    return sorted({m.parent for depth in ("*", "*/*", "*/*/*") for m in root.glob(f"{depth}/{plan.MANIFEST}")})


def cancel_sweep_jobs(env: dict[str, str], root: Path) -> list[str]:
    """Cancel the jobs still queued or running of the sweeps under `root` (found by the names the launcher
    gives them, slurm.sweep_jobs); returns their ids.

    A test ends when its checks are done, often with its sweep's grading and analysis jobs still queued: left
    alone they would hold the node's two CPUs while the next test waits for them."""
    from hpc_mle import slurm

    sweeps = sweep_folders(root)
    if not sweeps:
        return []
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%j|%T|%r"], env=env, capture_output=True, text=True,
                             timeout=30)
    except subprocess.TimeoutExpired:
        return []
    queue = [slurm.QueuedJob(*parts) for parts in (line.split("|") for line in out.stdout.splitlines())
             if len(parts) == 4]
    jobs = sorted({q.job.split("_")[0] for sweep in sweeps for q in slurm.sweep_jobs(sweep, queue)})
    if jobs:
        subprocess.run(["scancel", *jobs], env=env, capture_output=True, timeout=30)
    return jobs


@pytest.fixture
def slurm_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The dev cluster's environment, or a skip (an error under CI=true). Started once per process
    (ensure_cluster); after each test, the jobs its sweeps (under its tmp_path) left in the queue are cancelled."""
    env = require_cluster()
    yield env
    cancel_sweep_jobs(env, tmp_path)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 420, every: float = 0.5) -> None:
    """Poll `check` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
