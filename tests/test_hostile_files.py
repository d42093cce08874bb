"""Hostile agents against the harness's files and limits, in real bubblewrap, as root and as an ordinary user.

Each attempt packs several tries; every try is checked on what the grader says, what the results folder
holds and that the host file it aimed at is unchanged. The agent learns the answers' host path the way a
real one would (/proc/self/mountinfo shows the source of /home/data) and is told only the names of two
host files (canaries) that it tries to make the harness write through.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil

from hpc_mle import analysis, grading, paths

CID = "mini-churn"

LINKS_AGENT = r'''
import json, os, sys, time
SUB, LOGS = "/home/submission", "/home/logs"
done = {}
if os.path.exists(f"{LOGS}/first-start-done"):          # the restart: nothing more to try
    print("second start"); sys.exit(3)
public = next(line.split()[3] for line in open("/proc/self/mountinfo") if line.split()[4] == "/home/data")
answers = os.path.normpath(os.path.join(public, "..", "private", "test.csv"))  # the host path, as the agent sees it
sample = open("/home/data/sample_submission.csv").read()

def attempt(name, fn):
    try:
        fn(); done[name] = "ok"
    except OSError as exc:
        done[name] = f"refused: {exc.strerror}"

attempt("abs", lambda: os.symlink(answers, f"{SUB}/abs.csv"))
attempt("rel", lambda: os.symlink("../../sibling/submission/submission.csv", f"{SUB}/rel.csv"))
open(f"{SUB}/good.csv", "w").write(sample)
attempt("hard", lambda: os.link(f"{SUB}/good.csv", f"{SUB}/hard.csv"))
attempt("hard-out", lambda: os.link("/home/data/sample_submission.csv", f"{SUB}/hard-out.csv"))
attempt("fifo", lambda: os.mkfifo(f"{SUB}/fifo.csv"))
attempt("dir", lambda: os.mkdir(f"{SUB}/dir.csv"))
with open(f"{SUB}/sparse.csv", "wb") as fh:
    fh.truncate(1 << 30)
attempt("zero", lambda: os.symlink("/dev/zero", f"{SUB}/zero.csv"))
attempt("log-link", lambda: os.symlink(CANARY_LOG, f"{LOGS}/agent.log"))
attempt("agent-link", lambda: (os.unlink("/home/agent/agent.py"), os.symlink(CANARY_AGENT, "/home/agent/agent.py")))
open(f"{LOGS}/llm_calls.jsonl", "w").write(json.dumps({"model": "x", "input_tokens": -5, "cost_usd": -1000.0}) + "\n")
for record in ("status.json", "events.jsonl", "config.json", "llm_calls.jsonl", "validator.jsonl", "agent.log"):
    for where in ("/home", "/home/submission/..", "/home/logs/..", "/opt/hpc-mle", "/opt/hpc-mle/.."):
        attempt(f"forge {where}/{record}", lambda: open(f"{where}/{record}", "a").write('{"state": "FORGED"}\n'))
# The snapshots see the kinds one after another; the graded file is the last: a link to the answers.
for kind in ("sparse.csv", "fifo.csv", "hard.csv", "abs.csv"):
    tmp = f"{SUB}/.next"
    if kind in ("abs.csv", "rel.csv", "zero.csv"):
        os.symlink(os.readlink(f"{SUB}/{kind}"), tmp)
    elif kind == "hard.csv":
        os.link(f"{SUB}/good.csv", tmp)
    elif kind == "fifo.csv":
        os.mkfifo(tmp)
    else:
        with open(tmp, "wb") as fh:
            fh.truncate(1 << 30)
    os.replace(tmp, f"{SUB}/submission.csv")
    time.sleep(1.2)
json.dump(done, open(f"{LOGS}/tries.json", "w"))
open(f"{LOGS}/first-start-done", "w").close()
print("first start done")
'''

DISK_AGENT = r'''
import time
with open("/tmp/fill", "wb") as fh:
    for _ in range(48):
        fh.write(b"x" * (1 << 20))
        fh.flush()
time.sleep(60)
'''

# Shared anonymous memory escapes RLIMIT_DATA (the sandbox's rlimit) but not the runner's RSS watcher.
MEMORY_AGENT = r'''
import mmap, time
shared = mmap.mmap(-1, 512 << 20)
for offset in range(0, 512 << 20, 4096):
    shared[offset] = 1
time.sleep(60)
'''

UPLOAD_AGENT = r'''
import http.client, json, socket, threading
SOCK = "/run/hpc-mle/validator.sock"

class Conn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=300)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(SOCK)

def post(body, headers):
    try:
        c = Conn(); c.request("POST", "/validate", body=body, headers=headers)
        r = c.getresponse(); return [r.status, json.loads(r.read() or b"{}")]
    except OSError as exc:
        return [None, str(exc)]

row = b"1234567,0.5\n"
big = b"id,churn\n" + row * ((100 << 20) // len(row))
results = {}
def upload(name):
    results[name] = post(big, {"Content-Type": "text/csv"})
threads = [threading.Thread(target=upload, args=(f"big{i}",)) for i in range(2)]
[t.start() for t in threads]; [t.join() for t in threads]
results["oversized"] = post(b"id,churn\n", {"Content-Type": "text/csv", "Content-Length": str(3 << 30)})
sample = open("/home/data/sample_submission.csv").read().splitlines()
wrong = "\n".join([sample[0]] + [f"999999{i}," + line.split(",", 1)[1] for i, line in enumerate(sample[1:])])
results["wrong-ids"] = post(wrong.encode(), {"Content-Type": "text/csv"})
json.dump(results, open("/home/logs/uploads.json", "w"))
'''


def _sibling(base: Path, answers: Path) -> Path:
    """Another attempt's submission beside this one: a perfect copy of the answers."""
    sub = base / "sibling" / "submission"
    sub.mkdir(parents=True)
    (sub / "submission.csv").write_bytes(answers.read_bytes())
    return sub / "submission.csv"


def _canaries(base: Path) -> dict[str, Path]:
    found = {}
    for name in ("CANARY_LOG", "CANARY_AGENT"):
        found[name] = base / f"{name.lower()}.txt"
        found[name].write_text(f"{name} untouched\n")
        os.chmod(found[name], 0o666)  # writable by anyone: only the harness's care keeps it unchanged
    return found


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_links_fifos_sparse_files_and_forged_records(hostile):
    answers = paths.private_dir(CID, hostile.data) / "test.csv"
    sibling = _sibling(hostile.base, answers)
    canaries = _canaries(hostile.base)
    before = {p: p.read_bytes() for p in (answers, sibling, *canaries.values())}
    source = "".join(f"{k} = {str(v)!r}\n" for k, v in canaries.items()) + LINKS_AGENT
    first = hostile.run(source, time_limit="60s")
    out = first.out
    assert first.status["state"] == "done", (first.status, first.proc.stderr[-2000:])
    tries = json.loads((out / "logs" / "tries.json").read_text())

    # The grader: every kind is invalid with its reason and nothing behind a link is read.
    sub = out / "submission"
    expect = {"submission.csv": "is a symbolic link", "abs.csv": "is a symbolic link", "rel.csv": "is a symbolic link",
              "hard.csv": "is a hard link", "fifo.csv": "is a FIFO", "dir.csv": "is a folder",
              "sparse.csv": "is 1.0 GiB, over the 256 MiB limit", "zero.csv": "is a symbolic link"}
    for name, reason in expect.items():
        report = grading.grade_submission(sub / name, CID, hostile.data)
        assert not report.valid_submission and not report.grader_error and reason in report.reason, (name, report)
        assert report.score is None and not report.any_medal
    assert tries["hard-out"].startswith("refused"), tries  # no hard link across the read-only mount
    assert first.status["submission_exists"] is False

    # The results: snapshots refused each kind once, none holds the answers or a dense 1 GiB copy.
    refusals = [e["reason"] for e in _events(out) if e["event"] == "snapshot-refused"]
    assert len(refusals) == len(set(refusals)) and any("symbolic link" in r for r in refusals), refusals
    for snap in (out / "snapshots").glob("*"):
        assert snap.stat().st_size < 1 << 20 and snap.read_bytes() != answers.read_bytes()

    # Forged records: the agent cannot reach the harness's files; the report's cost is what the proxy recorded.
    forged = {k: v for k, v in tries.items() if k.startswith("forge /opt/hpc-mle/") and "/../" not in k}
    assert len(forged) == 6 and all(v.startswith("refused") for v in forged.values()), forged  # read-only mount
    for record in ("status.json", "events.jsonl", "config.json", "agent.log"):
        assert b"FORGED" not in (out / record).read_bytes(), record
    assert not (out / "llm_calls.jsonl").exists()
    assert analysis._usage(out, first.status) == {}

    # A restart of the same folder (a requeue): links planted in logs/ and agent/ are not written through.
    status = json.loads((out / "status.json").read_text())
    (out / "status.json").write_text(json.dumps({**status, "state": "preempted"}))
    second = hostile.run(source, time_limit="60s", out=out)
    assert second.status["starts"] == 2 and second.status["state"] == "failed", second.status
    assert "second start" in second.status["log_tail"] and "second start" in (out / "agent.log").read_text()
    assert not (out / "agent" / "agent.py").is_symlink() and "CANARY_AGENT" in (out / "agent" / "agent.py").read_text()
    assert tries["log-link"] == "ok" and tries["agent-link"] == "ok", tries
    for path, content in before.items():
        assert path.read_bytes() == content, path


def test_disk_and_memory_limits_end_the_attempt_as_agent_failures(hostile):
    t0 = time.monotonic()
    result = hostile.run(DISK_AGENT, time_limit="60s", extra=("--disk-quota", "0.03"))
    status = result.status
    assert status.get("state") == "failed" and status["failure"] == "agent", (status, result.proc.stderr[-2000:])
    assert status["reason"].startswith("disk quota exceeded: ") and "of 0.03 GiB in /home/submission" in status["reason"]
    assert time.monotonic() - t0 < 40 and status["limits"]["disk_used_gib_max"] > 0.03
    assert any(e["event"] == "limit-exceeded" for e in _events(result.out))
    report = result.grade()
    assert not report["valid_submission"] and "no submission file" in report["reason"]

    t0 = time.monotonic()
    result = hostile.run(MEMORY_AGENT, time_limit="60s", extra=("--memory", "0.25"))
    status = result.status
    assert status.get("state") == "failed" and status["failure"] == "agent", (status, result.proc.stderr[-2000:])
    assert status["reason"].startswith("memory limit exceeded: ") and status["reason"].endswith("of 0.25 GiB")
    assert time.monotonic() - t0 < 40 and status["limits"]["rss_gib_max"] > 0.25


def _peak_rss(marker: str, stop: threading.Event, peak: list[int]) -> None:
    """The largest RSS of the runner process (whose argv names `marker`), sampled until stopped."""
    while not stop.wait(0.1):
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            cmd = p.info["cmdline"] or []
            if "run-attempt" in cmd and marker in cmd and p.info["memory_info"]:
                peak[0] = max(peak[0], p.info["memory_info"].rss)


def test_validator_streams_uploads_one_at_a_time_and_echoes_nothing(hostile):
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_peak_rss, args=(str(hostile.base / f"attempt{hostile.n + 1}"), stop, peak))
    sampler.start()
    try:
        result = hostile.run(UPLOAD_AGENT, time_limit="120s")
    finally:
        stop.set()
        sampler.join()
    assert result.status["state"] == "done", (result.status, result.proc.stderr[-2000:])
    uploads = json.loads((result.out / "logs" / "uploads.json").read_text())
    for name in ("big0", "big1"):  # both checked in turn, 100 MiB each, neither held in memory twice
        status, reply = uploads[name]
        assert status == 200 and reply["valid"] is False and "rows, expected" in reply["result"], uploads
    status, reply = uploads["oversized"]
    assert status == 413 and "over this competition's 256 MiB limit" in reply["result"], uploads
    status, reply = uploads["wrong-ids"]
    text = json.dumps(reply)
    assert status == 200 and not reply["valid"] and "id(s)" in reply["result"]
    assert str(hostile.base) not in text and "private" not in text and "test.csv" not in text
    assert 0 < peak[0] < 1.25 * 2**30, f"runner peak RSS {peak[0] / 2**20:.0f} MiB"
    log = [json.loads(line) for line in (result.out / "validator.jsonl").read_text().splitlines()]
    assert [row["bytes"] for row in log[:2]] == [len(b"id,churn\n") + 12 * ((100 << 20) // 12)] * 2
    print(f"runner peak RSS with two concurrent 100 MiB uploads: {peak[0] / 2**20:.0f} MiB")



def test_refused_upload_reply_is_never_lost_to_a_reset(tmp_path):
    """A 413 sent before the body is read reaches the client: closing with unread bytes would reset it (CI saw it)."""
    import http.client
    import socket

    from hpc_mle.validator import Validator

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(str(tmp_path / "v.sock"))

    statuses = []
    with Validator(tmp_path / "v.sock", "mini-churn", None, tmp_path / "v.jsonl"):
        for _ in range(300):  # without the lingering close about 1 in 100 of these lost their reply here
            conn = Conn("localhost", timeout=30)
            try:
                conn.request("POST", "/validate", body=b"id,churn\n" * 1000,
                             headers={"Content-Type": "text/csv", "Content-Length": str(3 << 30)})
                reply = conn.getresponse()
                statuses.append((reply.status, json.loads(reply.read())["result"][:39]))
            except OSError as exc:
                statuses.append((None, str(exc)))
            finally:
                conn.close()
    assert set(statuses) == {(413, "Submission not checked: upload is 3.0 G")}, statuses


def test_multipart_field_is_streamed_whatever_the_chunking():
    """The validator's streaming multipart reader finds the field however the body is cut into reads."""
    import io
    import random

    from hpc_mle import validator

    boundary, rng = b"XyZb0undary", random.Random(1)
    for _ in range(100):
        content = bytes(rng.choice(b"ab\r\n-XyZ") for _ in range(rng.randint(0, 300)))
        body = (b"pre\r\n--" + boundary + b'\r\nContent-Disposition: form-data; name="other"\r\n\r\nzz\r\n--'
                + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
                + content + b"\r\n--" + boundary + b"--\r\n")
        for chunk in (1, 3, 64, 4096):
            source, out = io.BytesIO(body), io.BytesIO()
            reader = type("Reader", (), {"read": lambda self, n, s=source, c=chunk: s.read(min(n, c))})()
            validator._copy_multipart_field(reader, boundary, validator._CappedSink(out, 1 << 20))
            assert out.getvalue() == content


# Where an agent could write outside its quota: bwrap's own memory-backed folders (an ordinary user's bwrap owns
# them), /dev/shm (memory), /home (a tmpfs before), its stdout log and its snapshots. It records what each try
# got, then fills /home until the quota stops it.
BOUNDS_AGENT = r'''
import errno, json, os, sys
found = {}
for d in ("/", "/dev", "/run", "/usr", "/opt/hpc-mle", "/home/data"):
    try:
        with open(os.path.join(d, "planted"), "wb") as fh:
            fh.write(b"x")
        found[d] = "ok"
    except OSError as exc:
        found[d] = errno.errorcode.get(exc.errno, str(exc.errno))
st = os.statvfs("/dev/shm")
found["shm_bytes"] = st.f_blocks * st.f_frsize
try:
    with open("/dev/shm/fill", "wb") as fh:
        for _ in range(200):
            fh.write(b"\0" * 2**20)
            fh.flush()
    found["shm_fill"] = "ok"
except OSError as exc:
    found["shm_fill"] = errno.errorcode.get(exc.errno, str(exc.errno))
os.unlink("/dev/shm/fill")
with open("/home/logs/bounds.json", "w") as fh:
    json.dump(found, fh)
with open(os.path.expanduser("~/cache.bin"), "wb") as fh:  # HOME is /home: on disk, under the quota
    for _ in range(200):
        fh.write(os.urandom(2**20))
        fh.flush()
import time; time.sleep(30)
'''

LOG_FLOOD_AGENT = r'''
import os, time
block = b"y" * 2**20
while True:  # about 100 MiB/s, until the harness stops it
    os.write(1, block)
    time.sleep(0.01)
'''

MANY_FILES_AGENT = r'''
import os, time
for i in range(5000):
    open(f"/home/code/f{i}", "w").close()
time.sleep(30)
'''


def test_memory_backed_folders_log_and_file_count_are_bounded(hostile):
    result = hostile.run(BOUNDS_AGENT, time_limit="60s", extra=("--disk-quota", "0.05", "--shm", "0.0625"))
    status = result.status
    found = json.loads((result.out / "logs" / "bounds.json").read_text())
    for d in ("/", "/dev", "/run", "/usr", "/opt/hpc-mle", "/home/data"):
        assert found[d] in ("EROFS", "EACCES", "EPERM"), (d, found)
    assert found["shm_bytes"] == 64 * 2**20 and found["shm_fill"] == "ENOSPC", found
    assert status["state"] == "failed" and status["failure"] == "agent", status
    assert status["reason"].startswith("disk quota exceeded") and "/tmp and /home" in status["reason"], status

    t0 = time.monotonic()
    result = hostile.run(LOG_FLOOD_AGENT, time_limit="60s", extra=("--disk-quota", "0.05"))
    status = result.status
    assert status["state"] == "failed" and "disk quota exceeded" in status["reason"] and "its log" in status["reason"]
    assert time.monotonic() - t0 < 40 and (result.out / "agent.log").stat().st_size < 2**30

    result = hostile.run(MANY_FILES_AGENT, time_limit="60s", extra=("--max-files", "1000"))
    status = result.status
    assert status["state"] == "failed" and status["reason"].startswith("file limit exceeded: more than 1000"), status
