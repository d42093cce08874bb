"""The bounded stop under real bubblewrap (issue 17, item 7), as root and as an ordinary user.

An agent that ignores TERM starts a child and, through a second child, a grandchild in a session of its own;
all of them ignore TERM and keep writing. The runner (`hpc-mle run-attempt`) gets SIGTERM, as Slurm sends it on
preemption, or reaches its time limit. Checked on the host: the whole stop ends within its bound, nothing of the
attempt is left in the process table (its PID namespace, its argv), status.json and the final snapshot say what
happened, and nothing written after the budget is graded (runner._undo_late_submission, also checked alone).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from hostile import IS_ROOT, Hostile

from hpc_mle import runner, watch

BOUND_S = 5.0  # --stop-bound; the grace (30 s) is longer: only the bound can end the stop in time

AGENT = r'''
import os, signal, subprocess, sys, time

MARK = "@MARK@"
role = sys.argv[1] if len(sys.argv) > 1 else "agent"
signal.signal(signal.SIGTERM, signal.SIG_IGN)


def spawn(name, **kw):
    return subprocess.Popen([sys.executable, __file__, name, MARK], **kw)


if role == "agent":
    with open("/home/logs/ns.txt", "w") as f:
        f.write(os.readlink("/proc/self/ns/pid"))
    spawn("child")
    spawn("spawner")
elif role == "spawner":
    spawn("grandchild", start_new_session=True)
log = open(f"/home/logs/{role}.txt", "a", buffering=1)
log.write(f"sid {os.getsid(0)}\n")
n = 0
while True:
    n += 1
    t = time.time()
    log.write(f"{n} {t!r}\n")  # before the write: whatever was written is logged
    if role == "agent":  # a new submission every ~2 ms, each one numbered
        with open("/home/submission/.next", "w") as f:
            f.write(f"id,n\n0,{n}\n")
        os.replace("/home/submission/.next", "/home/submission/submission.csv")
    time.sleep(0.002 if role == "agent" else 0.01)
'''


def _writes(logs: Path, role: str) -> list[tuple[int, float]]:
    """(number, wall time just before the write) of each write a process logged (the last may not have happened)."""
    lines = (logs / f"{role}.txt").read_text().splitlines()
    return [(int(n), float(t)) for n, t in (line.split() for line in lines[1:] if line.count(" ") == 1)]


def _sid(logs: Path, role: str) -> int:
    return int((logs / f"{role}.txt").read_text().split("\n", 1)[0].split()[1])


def _survivors(out: Path, marker: str, pid_ns: str) -> list[str]:
    """Every host process that belongs to the attempt: in its PID namespace, or naming it (bwrap's argv names the
    attempt's folders; the agent's processes carry the marker)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ns = os.readlink(proc / "ns" / "pid")
        except OSError:
            ns = None
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            argv = ""
        if ns == pid_ns or marker in argv or str(out) in argv:
            found.append(f"{proc.name}: {argv[:200]}")
    return found


def _wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def _lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except OSError:
        return 0


def _run(h: Hostile, marker: str, time_limit: str, preempt: bool) -> dict:
    """Run the agent through the CLI in a thread; with `preempt`, SIGTERM the runner once every writer writes."""
    out = h.base / f"attempt{h.n + 1}"
    result: list = []
    t_start = time.time()
    thread = threading.Thread(target=lambda: result.append(h.run(
        AGENT.replace("@MARK@", marker), time_limit=time_limit, grace="30s", timeout=60,
        extra=("--stop-bound", f"{BOUND_S:g}s", "--status-interval", "1s"))))
    thread.start()
    logs = out / "logs"
    writing = _wait_for(lambda: all(_lines(logs / f"{r}.txt") >= 3 for r in ("agent", "child", "grandchild")), 30)
    signalled = None
    if preempt and writing:
        cli = [p for p in psutil.Process().children() if "run-attempt" in " ".join(p.cmdline())]
        time.sleep(0.3)
        signalled = time.time()
        cli[0].send_signal(signal.SIGTERM)
    thread.join(70)
    ended = time.time()
    assert writing and result, "the agent's three writers never all started"
    pid_ns = (logs / "ns.txt").read_text()
    return {"res": result[0], "out": out, "logs": logs, "signalled": signalled, "ended": ended, "start": t_start,
            "survivors": _survivors(out, marker, pid_ns), "pid_ns": pid_ns}


def _assert_nothing_left(run: dict) -> None:
    assert run["pid_ns"].startswith("pid:[")
    assert run["survivors"] == [], run["survivors"]
    sizes = {r: _lines(run["logs"] / f"{r}.txt") for r in ("agent", "child", "grandchild")}
    time.sleep(0.2)
    assert sizes == {r: _lines(run["logs"] / f"{r}.txt") for r in sizes}, "a writer still writes after the stop"
    for role in sizes:  # each wrote until the stop, none after the runner was gone
        assert _writes(run["logs"], role)[-1][1] < run["ended"]
    assert _sid(run["logs"], "grandchild") != _sid(run["logs"], "agent")  # its own session: a daemon


def _final(out: Path) -> tuple[str, list[Path]]:
    snaps = sorted((out / "snapshots").glob("*.csv"), key=lambda p: int(p.stem))
    return (out / "submission" / "submission.csv").read_text(), snaps


def test_a_preempted_sandboxed_attempt_stops_within_its_bound(hostile, who):
    marker = f"hpc-mle-stop-{who}-{time.time_ns()}"
    run = _run(hostile, marker, "60s", preempt=True)
    status, out = run["res"].status, run["out"]
    took = run["ended"] - run["signalled"]  # signal to the runner's exit: the stop, the final snapshot and status
    print(f"\n[{who}] SIGTERM to exit {took:.2f} s; stop_s {status['stop_s']}; bound {BOUND_S:g} s")
    assert status["state"] == "preempted", (status, run["res"].proc.stderr[-2000:])
    assert took < BOUND_S and 0 < status["stop_s"] < BOUND_S
    _assert_nothing_left(run)
    # What ended the agent: the KILL after the grace (bwrap gets no TERM, so the namespace outlives it; -15 only
    # where bwrap ended of a TERM another process sent).
    assert status["exit_code"] in (-signal.SIGTERM, -signal.SIGKILL) and watch.died_of_signal(status["exit_code"])
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][-3:] == ["stopping", "stopped", "end"]
    assert events[-1]["exit_code"] == status["exit_code"] and "SIGTERM" in status["reason"]
    # Agent time: from before its first write to no later than the runner's exit, the whole stop counted.
    first = _writes(run["logs"], "agent")[0][1]
    assert run["signalled"] - first < status["agent_elapsed_s"] < run["ended"] - run["start"]
    # The final snapshot is the submission the agent left, and that one was written within the agent time.
    submission, snaps = _final(out)
    assert status["submission_exists"] and snaps and snaps[-1].read_text() == submission
    n = int(submission.split()[-1].split(",")[1])
    written = dict(_writes(run["logs"], "agent"))
    assert written[n] <= written[min(written)] + status["agent_elapsed_s"]  # its first write came after t0
    assert "late-submission-ignored" not in {e["event"] for e in events}  # the budget was far from spent


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_writes_after_the_time_budget_are_not_graded_under_bwrap(mini_data):
    h = Hostile("root" if IS_ROOT else "user", mini_data)
    try:
        run = _run(h, f"hpc-mle-stop-timeout-{time.time_ns()}", "2s", preempt=False)
        status, out = run["res"].status, run["out"]
        assert status["state"] == "timeout" and 0 < status["stop_s"] < BOUND_S, status
        _assert_nothing_left(run)
        submission, snaps = _final(out)
        n = int(submission.split()[-1].split(",")[1])
        written = _writes(run["logs"], "agent")
        late = [m for m, _ in written if m > n]
        events = {e["event"]: e for e in map(json.loads, (out / "events.jsonl").read_text().splitlines())}
        print(f"\n[timeout] stop_s {status['stop_s']}; agent_elapsed_s {status['agent_elapsed_s']}; "
              f"{len(late)} written after the copy at the stop's start, not graded")
        # Between the time limit and the namespace's end the agent may write a few more (~2 ms apart): not graded.
        if "late-submission-ignored" in events:
            assert late, (n, written[-3:])
        else:
            assert len(late) <= 1, (n, written[-3:])  # at most one logged, then killed before it wrote
        assert snaps[-1].read_text() == submission  # the final snapshot is what is graded
        # The graded one was written before the budget ran out: no later than its start plus the limit.
        assert dict(written).get(n, 0) < written[0][1] + 2.0
    finally:
        h.close()


# ---------------------------------------------------------------- the undo on its own, on real files


@pytest.mark.parametrize("late", ["rewrite", "in-place same size, mtime set back", "link", "new", "unchanged"])
def test_undo_late_submission(tmp_path, late):
    sub = tmp_path / "submission"
    sub.mkdir()
    target = sub / "submission.csv"
    if late != "new":
        target.write_text("id,n\n0,1\n")
    at_stop = runner._submission_at_stop(tmp_path, 1 << 20)
    before = target.stat() if late != "new" else None
    seen: list[tuple[str, dict]] = []
    time.sleep(0.01)  # a later ctime on file systems with coarse timestamps
    if late == "rewrite":
        (sub / "x").write_text("id,n\n0,2\n")
        os.replace(sub / "x", target)
    elif late.startswith("in-place"):
        target.write_text("id,n\n0,9\n")
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif late == "link":
        (tmp_path / "answers.csv").write_text("secret")
        target.unlink()
        target.symlink_to(tmp_path / "answers.csv")
    elif late == "new":
        target.write_text("id,n\n0,3\n")
    runner._undo_late_submission(tmp_path, at_stop, lambda name, **kw: seen.append((name, kw)), past_budget=True)
    assert not (tmp_path / runner.AT_STOP).exists()  # the private copy is gone either way
    if late == "unchanged":
        assert seen == [] and target.read_text() == "id,n\n0,1\n"
    elif late == "new":
        assert not target.exists() and "appeared" in seen[0][1]["reason"]
    else:
        assert not target.is_symlink() and target.read_text() == "id,n\n0,1\n"
        assert [name for name, _ in seen] == ["late-submission-ignored"]


def test_a_change_within_the_budget_stays(tmp_path):
    (tmp_path / "submission").mkdir()
    target = tmp_path / "submission" / "submission.csv"
    target.write_text("id,n\n0,1\n")
    at_stop = runner._submission_at_stop(tmp_path, 1 << 20)
    target.write_text("id,n\n0,2\n")  # a preempted agent's last write: the budget is not spent
    seen: list = []
    runner._undo_late_submission(tmp_path, at_stop, lambda *a, **kw: seen.append(a), past_budget=False)
    assert seen == [] and target.read_text() == "id,n\n0,2\n" and not (tmp_path / runner.AT_STOP).exists()


SAVER = r'''
import os, signal, subprocess, sys, time

if len(sys.argv) > 1:  # the child: ignores TERM, ends only with the sandbox
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.05)


def save(signum, frame):  # as AIDE saves its journal on TERM: it takes a moment, then the file
    time.sleep(1.0)
    with open("/home/logs/journal.json", "w") as f:
        f.write('{"saved_at": %r}' % time.time())
    sys.exit(0)


signal.signal(signal.SIGTERM, save)
with open("/home/logs/ns.txt", "w") as f:
    f.write(os.readlink("/proc/self/ns/pid"))
subprocess.Popen([sys.executable, __file__, "child"])
while True:
    time.sleep(0.05)
'''


def test_under_bwrap_the_agent_gets_its_grace_to_save_on_term(hostile, who):
    """bwrap itself gets no TERM (it would end the PID namespace at once): the agent's own TERM handler runs
    through the grace and saves its file; its TERM-ignoring child goes with the sandbox, within the bound."""
    marker = f"hpc-mle-saver-{who}-{time.time_ns()}"
    res = hostile.run(SAVER.replace("@MARK@", marker), time_limit="3s", grace="4s", timeout=60,
                      extra=("--stop-bound", f"{BOUND_S:g}s"))
    status, logs = res.status, res.out / "logs"
    assert status["state"] == "timeout", (status, res.proc.stderr[-2000:])
    assert (logs / "journal.json").is_file(), "the agent's TERM handler was cut short"
    saved = json.loads((logs / "journal.json").read_text())["saved_at"]
    print(f"\n[{who}] stop_s {status['stop_s']}; journal saved within the grace")
    assert 1.0 <= status["stop_s"] < BOUND_S  # the handler's second was granted, the bound kept
    assert status["exit_code"] == 0 or not watch.died_of_signal(status["exit_code"]), status  # it ended itself
    assert saved < time.time()
    assert _survivors(res.out, marker, (logs / "ns.txt").read_text()) == []  # the child went with the namespace
