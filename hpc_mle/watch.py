"""What watches a running attempt from outside its sandbox: snapshots of the submission, the limits on
disk, files and memory, and the stopping of every process the attempt started.

The agent can neither see nor stop any of this. Everything here reads the agent's folders without following
a link (hpc_mle/files.py) and tells the agent's processes from bystanders by the mark in their environment.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from hpc_mle import files

MARK_VAR = "HPC_MLE_ATTEMPT_MARK"  # in every agent process's environment: tells its orphans from bystanders


def set_subreaper(on: bool) -> None:
    """While on, orphaned grandchildren (a daemonised agent process) are re-parented to us, so we can kill them.

    Switched off after the attempt: in a long-lived process (a local sweep, the tests) every daemon started
    later by anyone below us would otherwise become our child too.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except (OSError, AttributeError):
            pass




class Snapshots(threading.Thread):
    """Every interval, copy the submission to snapshots/<elapsed>.csv if it changed.

    Only a regular file of at most `max_bytes` with one link is copied, from the descriptor that was
    checked (files.copy_untrusted); anything else is refused, and each distinct refusal is recorded once.
    """

    def __init__(self, out: Path, interval: float, elapsed, max_bytes: int, events: Callable[..., None] | None = None) -> None:
        super().__init__(name="snapshots", daemon=True)
        self.out, self.interval, self.elapsed, self.max_bytes = out, interval, elapsed, max_bytes
        self.events = events
        self.stop_event = threading.Event()
        self.last: tuple[int, int, int] | None = None
        self.taken = 0
        self.refusals: set[str] = set()

    def take(self) -> Path | None:
        try:
            st = os.stat(self.out / "submission" / "submission.csv", follow_symlinks=False)
        except OSError:
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self.last:
            return None
        dst = self.out / "snapshots" / f"{int(self.elapsed())}.csv"
        try:
            files.copy_untrusted(self.out / "submission", "submission.csv", dst, self.max_bytes)
        except files.UnsafeFile as exc:
            self._refuse(str(exc))
            self.last = key
            return None
        except OSError:
            return None
        self.last, self.taken = key, self.taken + 1
        return dst

    def _refuse(self, reason: str) -> None:
        if reason not in self.refusals and self.events is not None:
            self.refusals.add(reason)
            self.events("snapshot-refused", reason=reason)

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.take()


class Limits(threading.Thread):
    """Every few seconds: the real disk use of the agent's writable folders, and (when a limit is set) the
    resident memory of its processes. Over a limit, `exceeded` says why and the attempt is stopped as an
    agent failure. Outside the sandbox, so the agent can neither see nor stop it."""

    def __init__(self, folders: dict[str, Path], quota_gb: float, memory_gb: float | None, pid: int,
                 mark: str | None, interval: float = 2.0, log: Path | None = None, max_files: int | None = None
                 ) -> None:
        super().__init__(name="limits", daemon=True)
        self.names, self.usage = list(folders), files.DiskUsage(list(folders.values()))
        self.log, self.max_files = log, max_files  # the agent's stdout log is harness-owned but its size is the agent's
        self.quota = int(quota_gb * 2**30)
        self.memory = int(memory_gb * 2**30) if memory_gb else None
        self.pid, self.mark, self.interval = pid, mark, interval
        self.stop_event = threading.Event()
        self.exceeded: str | None = None
        self.peak_disk = self.peak_rss = 0

    def check(self) -> str | None:
        used = self.usage.step() + _disk_bytes(self.log)
        self.peak_disk = max(self.peak_disk, used)
        if used > self.quota:
            where = ", ".join([*self.names, *(["its log"] if self.log else [])])
            return f"disk quota exceeded: {used / 2**30:.2f} GiB used of {self.quota / 2**30:g} GiB in {where}"
        if self.max_files is not None and self.usage.entries > self.max_files:
            return (f"file limit exceeded: more than {self.max_files} files and folders in "
                    f"{', '.join(self.names)}")
        if self.memory is not None:
            rss = _agent_rss(self.pid, self.mark)
            self.peak_rss = max(self.peak_rss, rss)
            if rss > self.memory:
                return f"memory limit exceeded: {rss / 2**30:.2f} GiB resident of {self.memory / 2**30:g} GiB"
        return None

    def run(self) -> None:
        while self.exceeded is None and not self.stop_event.wait(self.interval):
            self.exceeded = self.check()


def _disk_bytes(path: Path | None) -> int:
    """Real bytes of one harness-owned file (0 when absent)."""
    try:
        return os.lstat(path).st_blocks * 512 if path is not None else 0
    except OSError:
        return 0


def _agent_rss(pid: int, mark: str | None) -> int:
    """Resident bytes of the agent's processes: its tree and its marked orphans (shared pages counted per process)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *_descendants(root)]
    except psutil.Error:
        procs = []
    procs += [p for p in _descendants(psutil.Process()) if p not in procs and _marked(p, mark)]
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def died_of_signal(exit_code: int | None) -> bool:
    """Whether an exit code says "killed by a signal": negative from Popen, or 128+N from a shell or bwrap,
    which report their child's death by signal N that way."""
    if exit_code is None:
        return False
    return exit_code < 0 or 128 < exit_code < 128 + signal.NSIG


def _marked(proc: psutil.Process, mark: str | None) -> bool:
    """Whether a process carries this attempt's mark in its environment (so it is the agent's, not a bystander)."""
    if mark is None:
        return False
    try:
        return proc.environ().get(MARK_VAR) == mark
    except psutil.Error:
        return False


KILL_WAIT_S = 5.0  # the most stop_tree waits for KILLed processes to go (a process in D state may take a moment)


def sandbox_binary(name: str, env: dict[str, str] | None = None) -> str | None:
    """The file a runtime started as `name` with `env`'s PATH runs: what /proc/<pid>/exe of its processes names."""
    found = shutil.which(name, path=(env if env is not None else os.environ).get("PATH", os.defpath))
    return os.path.realpath(found) if found else None


def _runs(proc: psutil.Process, binary: str | None) -> bool:
    """Whether the process runs `binary`, read from /proc/<pid>/exe itself: psutil's exe() falls back to argv[0]
    where the link cannot be read, and an agent writes its own argv."""
    if binary is None:
        return False
    try:
        return os.readlink(f"/proc/{proc.pid}/exe") == binary
    except OSError:
        return False


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has ended; only its parent's wait is left)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_tree(proc: subprocess.Popen, grace_s: float, mark: str | None = None, bound_s: float | None = None,
              sandbox_exe: str | None = None) -> int:
    """TERM every process of the attempt, KILL what is left after the grace period; return how many were killed.

    The attempt's processes are the agent's tree plus orphans re-parented to us that carry the attempt's
    mark; other processes below us (daemons someone else started in the same process) are left alone.
    `sandbox_exe` (the bwrap binary, sandbox_binary): its processes get no TERM, only the final KILL. bwrap
    dies of a TERM, and with it the PID namespace at once, so a TERM to it would take the agent's grace (a
    scaffold saving its work on TERM, as AIDE saves its journal) away. Apptainer's starter forwards the TERM
    to the container's process instead, so it needs no such care.
    `bound_s` caps the whole sequence (TERM, grace, KILL, reaping): the grace shrinks so that KILL and its
    wait still fit, which keeps a preempted attempt's stop inside Slurm's KillWait.
    """
    t0 = time.monotonic()
    kill_wait = KILL_WAIT_S if bound_s is None else min(KILL_WAIT_S, max(0.5, bound_s / 4))
    if bound_s is not None:
        grace_s = max(0.0, min(grace_s, bound_s - kill_wait))
    me = psutil.Process()
    try:
        root = psutil.Process(proc.pid)
        victims = [root, *_descendants(root)]
    except psutil.NoSuchProcess:
        victims = []

    def orphans() -> list[psutil.Process]:
        return [p for p in _descendants(me) if p not in victims and _marked(p, mark)]

    victims += orphans()
    inside = [p for p in victims if not _runs(p, sandbox_exe)]
    for p in reversed(inside):  # deepest first, so parents see their children go
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(inside, timeout=grace_s)
    own = [p for p in victims if p not in inside]  # the sandbox's: killed now if left, waited for either way
    alive = [p for p in own if _alive(p)] + alive  # bwrap first: it dies of our KILL, not of its child's
    for p in alive + orphans():
        try:
            p.kill()
        except psutil.Error:
            pass

    def left() -> float:
        return kill_wait if bound_s is None else max(0.1, bound_s - (time.monotonic() - t0))

    # bwrap's init may still be ending the namespace after its parent left (re-parented to us: reaped here)
    psutil.wait_procs([*alive, *(p for p in own if p not in alive)], timeout=min(kill_wait, left()))
    reaped = getattr(victims[0], "returncode", None) if victims else None
    if proc.returncode is None and reaped is not None:
        proc.returncode = reaped  # psutil reaped it: Popen.wait would now see no child and say 0
    try:
        proc.wait(timeout=min(kill_wait, left()))
    except subprocess.TimeoutExpired:
        pass
    return len(alive)
