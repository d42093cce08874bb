"""Support for the hostile-agent tests: run an adversarial agent through `hpc-mle run-attempt`, as root
and as an ordinary user, in real bubblewrap.

CI runs as root; the "user" variant creates an ordinary account (`hpcmle-tester`) and runs the whole
attempt (the harness too) under it, as on a cluster. A test takes the `who` fixture ("root" or "user")
and calls `Hostile.run(source)` with the agent's Python source; it gets the attempt's status and folder
back and asserts on what the grader, the results and the host look like afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hpc_mle import paths

USER = "hpcmle-tester"
IS_ROOT = os.geteuid() == 0
# A secret the harness's environment holds; no sandbox, file or report may ever show it.
SECRET = "sk-hostile-test-secret-0123456789"


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True)


def _open_traverse(path: Path, changed: list[tuple[Path, int]]) -> None:
    """Give others the search bit on every ancestor of `path` (e.g. /root for a pyenv Python), noted for undo."""
    for parent in [*reversed(path.parents), path]:
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            changed.append((parent, stat.S_IMODE(mode)))
            os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)


@pytest.fixture(scope="session")
def ordinary_user():
    """An ordinary account that can run this Python and this checkout (search bits restored afterwards)."""
    if not IS_ROOT:
        yield None
        return
    _ensure_user()
    # Several test sessions may run at once on one machine: the modes they opened are kept in one file, and
    # only the last session out (the one that gets the lock exclusively) restores them.
    with open(MODES_LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        changed: list[tuple[Path, int]] = []
        for where in (Path(sys.executable).resolve().parent, Path(sys.prefix).resolve(), paths.REPO_ROOT.resolve()):
            _open_traverse(where, changed)
        saved = _saved_modes()
        saved.update({str(p): m for p, m in changed if str(p) not in saved})
        MODES_FILE.write_text(json.dumps(saved))
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield USER
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another session still needs them open
        for path, mode in _saved_modes().items():
            os.chmod(path, mode)
        MODES_FILE.unlink(missing_ok=True)


MODES_LOCK = Path(tempfile.gettempdir()) / "hpcmle-hostile-modes.lock"
MODES_FILE = Path(tempfile.gettempdir()) / "hpcmle-hostile-modes.json"


def _saved_modes() -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(MODES_FILE.read_text()).items()}
    except (OSError, ValueError):
        return {}


@pytest.fixture(params=["root", "user"])
def who(request, ordinary_user) -> str:
    if request.param == "root" and not IS_ROOT:
        pytest.skip("the root variant needs root (CI runs as root)")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    return request.param


@dataclass
class Result:
    status: dict
    out: Path
    proc: subprocess.CompletedProcess

    def grade(self) -> dict:
        """The grader's report for the attempt's submission, as `hpc-mle grade-sample` gives it."""
        from hpc_mle import grading

        report = grading.grade_submission(self.out / "submission" / "submission.csv", self.status_cid,
                                          self.data)
        return report.to_dict()

    status_cid: str = "mini-churn"
    data: Path | None = None


class Hostile:
    """A world-traversable base folder with its own copy of the mini data, owned by whoever runs the harness."""

    def __init__(self, who: str, mini_data: Path) -> None:
        self.who = who
        self.base = Path(tempfile.mkdtemp(prefix="hpcmle-hostile-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.data = self.base / "data"
        shutil.copytree(mini_data, self.data, symlinks=True)
        if who == "user" and IS_ROOT:
            subprocess.run(["chown", "-R", f"{USER}:{USER}", str(self.base)], check=True)
        self.n = 0

    def run(self, source: str, competition: str = "mini-churn", time_limit: str = "60s", grace: str = "2s",
            extra: tuple[str, ...] = (), env: dict[str, str] | None = None, timeout: float = 180,
            out: Path | None = None) -> Result:
        """Run `source` (Python) as the agent; return its status, folder and the CLI's output.

        `out`: the folder of an earlier attempt, to start it again (a requeue); else a new one."""
        self.n += 1
        agent = self.base / f"agent{self.n}"
        agent.mkdir()
        (agent / "agent.py").write_text(textwrap.dedent(source))
        scaffold = agent / "scaffold.yaml"
        scaffold.write_text(yaml.safe_dump({"name": f"hostile{self.n}", "agent_files": [str(agent / "agent.py")],
                                            "command": ["python3", "/home/agent/agent.py"]}))
        out = out or self.base / f"attempt{self.n}"
        cmd = [sys.executable, "-m", "hpc_mle.cli", "run-attempt", "--competition", competition,
               "--scaffold", str(scaffold), "--sandbox", "bwrap", "--time-limit", time_limit, "--grace", grace,
               "--telemetry-interval", "1s", "--snapshot-interval", "1s", "--out", str(out),
               "--data-dir", str(self.data), *extra]
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                    "OPENAI_API_KEY": SECRET, "KAGGLE_KEY": SECRET, **(env or {})}
        if self.who == "user" and IS_ROOT:
            subprocess.run(["chown", "-R", f"{USER}:{USER}", str(agent)], check=True)
            full_env["HOME"] = str(self.base)
            cmd = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--", *cmd]
        else:
            full_env["HOME"] = os.environ.get("HOME", "/root")
        proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.base))
        try:
            status = json.loads((out / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        return Result(status=status, out=out, proc=proc, status_cid=competition, data=self.data)

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def hostile(who, mini_data):
    h = Hostile(who, mini_data)
    yield h
    h.close()


def no_secret_anywhere(root: Path, secret: str = SECRET) -> list[Path]:
    """Files under `root` that contain the harness's secret, or another value that must not leak (must be none)."""
    found = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and secret.encode() in p.read_bytes():
                found.append(p)
        except OSError:
            continue
    return found
