"""Serving an open model for a sweep with vLLM: the server, its address file, the wait, the teardown.

A model config with `serve: vllm` gets one server per sweep (a Slurm job, or a subprocess with
cluster=local). The server writes `<sweep>/serve/<model name>/address.json` once its process is up;
attempts poll that file and the server's /health, then use `http://host:port/v1`. Agent arrays start
only once the server job has started (`--dependency=after:<server>`), so no attempt holds GPUs while
the server waits in the queue; one that waits too long for /health (weights loading) fails as an
infrastructure failure (`hpc-mle resume` reruns it) while the rest of the sweep goes on.
A teardown job (`afterany` on the agent arrays) cancels the server and records that in teardown.json.

Relay: where the sweep needs the server longer than the partition's MaxTime, the launcher submits a chain
of server jobs (hpc_mle.slurm.server_time), each `--dependency=after:<previous>+<minutes>`, so job k+1
starts before job k reaches its limit. A later job publishes its address only once its own /health
answers, and a job that ends leaves alone an address.json a later job has taken over; the proxies, which
re-read address.json when a connection fails, then follow it. The teardown cancels every job of the chain.

Security: the server binds the address its node's host name resolves to (0.0.0.0 only where that is
a loopback address; clients use the host name) and requires an API key generated per sweep (`secrets/api_key`, mode 0600). vLLM
reads it from $VLLM_API_KEY (never argv: process tables are world-readable); only the attempts'
metering proxies read the file; the agent in its sandbox sees the proxy's own token, never this key.

Port: vLLM cannot report a port the kernel picked (`--port 0`), but it binds its socket before loading
the weights, so a port taken between our check and its bind makes it exit at once with EADDRINUSE: the
server is then restarted on another free port (PORT_TRIES times) and address.json rewritten.
Restarts: the server job is `--no-requeue`; if it is resubmitted anyway (a relaunch), the proxies
re-read address.json when a connection fails, so a server at a new host:port is found.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hpc_mle import slurm_queue
from hpc_mle.files import atomic_write_json, read_json

ADDRESS = "address.json"  # written by the server: host, port, base_url, job id, started (and ended)
JOB = "job.json"  # written by the launcher: the server job id and the agent arrays that use it
TEARDOWN = "teardown.json"  # written by the teardown job: what it cancelled, or why it kept the server
LOG = "server.log"
LOCK = "address.lock"  # held while address.json is read and rewritten (two relay jobs overlap)
KEY_FILE = "secrets/api_key"  # the sweep's key for this server: mode 0600 in a 0700 folder
KEY_ENV = "VLLM_API_KEY"  # vLLM's environment variable for --api-key (argv is world-readable)
PORT_TRIES = 5  # restarts on another port when vLLM finds its port taken (EADDRINUSE)
ADDR_IN_USE = ("Address already in use", "Errno 98", "EADDRINUSE")


class ServeError(RuntimeError):
    """The model server is not usable (never came up, exited, misconfigured)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_served(model: dict[str, Any] | None) -> bool:
    return bool(model) and model.get("serve") == "vllm"


def serve_dir(sweep_dir: Path, name: str) -> Path:
    return Path(sweep_dir) / "serve" / name


def served_models(models: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The distinct served models of a sweep, by name; two different configs under one name are refused."""
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        if not is_served(model):
            continue
        name = model["name"]
        if name in out and out[name] != model:
            raise ServeError(f"model {name!r} is served with different settings within one sweep; give each "
                             f"variant its own model.name (attempt ids and the server's folder follow the name)")
        if not model.get("model"):
            raise ServeError(f"model {name!r}: serve: vllm needs 'model' (a Hugging Face id or a local path)")
        out[name] = model
    return out


def sweep_models(sweep_dir: Path, config_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Served models of the given attempts, read from the sweep's stored configs."""
    models = []
    for cid in sorted(set(config_ids)):
        cfg = read_json(Path(sweep_dir) / "configs" / f"{cid}.json")
        if cfg is None:
            raise ServeError(f"{Path(sweep_dir) / 'configs' / f'{cid}.json'} is missing or unreadable")
        models.append(cfg["model"])
    return served_models(models)


# ---------------------------------------------------------------- the server process


def hf_home(model: dict[str, Any]) -> str | None:
    """The model cache the server reads (serve_conf.env.HF_HOME, else the job's $HF_HOME)."""
    env = (model.get("serve_conf") or {}).get("env") or {}
    return env.get("HF_HOME") or os.environ.get("HF_HOME") or None


def server_command(model: dict[str, Any], port: int, host: str = "0.0.0.0") -> list[str]:
    """`vllm serve MODEL --host H --port P --tensor-parallel-size N ARGS`, in the image if one is set.

    Under Apptainer the model cache (HF_HOME, on shared storage) is bound at the same path, so
    HF_HUB_OFFLINE=1 finds the weights; the environment (HF_HOME, the key) passes in as Apptainer's does."""
    sc = model.get("serve_conf") or {}
    override = sc.get("command")  # tests only: a stand-in program for `vllm serve`
    program = list(override) if override else ["vllm", "serve"]
    argv = [*program, str(model["model"]), "--host", host, "--port", str(port),
            "--tensor-parallel-size", str(max(1, int(sc.get("gpus") or 1))), *map(str, sc.get("args") or [])]
    if sc.get("image") and not override:
        cache = hf_home(model)
        binds = ["--bind", f"{cache}:{cache}"] if cache else []
        argv = ["apptainer", "exec", "--nv", *binds, str(sc["image"]), *argv]
    return argv


def bind_host() -> str:
    """This node's address as other nodes reach it (its host name resolved); 0.0.0.0 where the name
    resolves only to a loopback address (e.g. Debian's 127.0.1.1), since clients on other nodes could
    not connect there."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return "0.0.0.0"
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    return "0.0.0.0"


def free_port(preferred: int, host: str = "0.0.0.0") -> int:
    """The configured port when it is free on this node, else one the kernel picks (checked, then
    released: vLLM binds it itself; run_server retries when another process took it meanwhile)."""
    for port in (int(preferred), 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ServeError("no free TCP port on this node")


def key_path(sweep_dir: Path, name: str) -> Path:
    return serve_dir(sweep_dir, name) / KEY_FILE


def ensure_key(sweep_dir: Path, name: str) -> Path:
    """The sweep's API key file for this server, created once (0600 in a 0700 folder) and kept on relaunch."""
    path = key_path(sweep_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32))
    return path


def read_key(path: str | Path) -> str:
    """The key in a key file; ServeError naming the file when it is missing or empty."""
    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise ServeError(f"cannot read the model server's API key {path}: {exc}; relaunch the sweep "
                         f"(the launcher creates it)") from exc
    if not key:
        raise ServeError(f"the model server's API key file {path} is empty; delete it and relaunch the sweep")
    return key


def _port_taken(log_path: Path, offset: int) -> bool:
    """Whether the server's output since `offset` says its port was taken (EADDRINUSE)."""
    with open(log_path, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    return any(word in text for word in ADDR_IN_USE)


@contextlib.contextmanager
def _address_lock(folder: Path):
    """One writer of address.json at a time: two jobs of a relay overlap, and each may write it."""
    with open(folder / LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _publish(folder: Path, address: dict[str, Any], ending: bool = False) -> bool:
    """Write address.json; a job that is ending leaves it alone when another job's live address is in it
    (a later job of the relay took over: the clients must keep following that one)."""
    with _address_lock(folder):
        current = read_json(folder / ADDRESS) or {}
        if ending and current.get("job_id") not in (None, address["job_id"]) and not current.get("ended_at"):
            return False
        atomic_write_json(folder / ADDRESS, address)
        return True


def next_in_relay(sweep_dir: Path, name: str, job_id: str) -> str | None:
    """The relay job after `job_id` (job.json), None for the last one or a server outside a relay."""
    relay = relay_jobs(sweep_dir, name)
    return relay[relay.index(job_id) + 1] if job_id in relay[:-1] else None


def _healthy_or_exited(proc: subprocess.Popen, address: dict[str, Any], stopped_by: list[str],
                       poll_s: float = 1.0) -> bool:
    """Wait until the server answers /health (True) or its process exits or the job is stopped (False)."""
    while proc.poll() is None and not stopped_by:
        if health_problem(address, timeout_s=poll_s) is None:
            return True
        time.sleep(poll_s)
    return False


def run_server(sweep_dir: str | Path, model: dict[str, Any], job_id: str | None = None,
               successor: bool = False) -> int:
    """The server job's body: start vLLM, publish its address, wait for it; returns its exit code.

    `successor`: a later job of a relay, whose predecessor still serves: it publishes its address only once
    its /health answers. scancel or the time limit (or Ctrl-C locally) sends TERM (Slurm's earlier warning,
    USR2, is ignored); it is passed on to the
    server's process group and the address file is marked ended, unless a later relay job has taken it over,
    so attempts still waiting fail at once (or wait for the next relay job) instead of timing out.
    A server that exits because its port was taken is started again on another port.
    """
    folder = serve_dir(Path(sweep_dir), model["name"])
    folder.mkdir(parents=True, exist_ok=True)
    job_id = str(job_id or os.environ.get("SLURM_JOB_ID") or f"local-{os.getpid()}")
    sc = model.get("serve_conf") or {}
    env = {**os.environ, **{str(k): str(v) for k, v in (sc.get("env") or {}).items()},
           KEY_ENV: read_key(ensure_key(Path(sweep_dir), model["name"]))}
    bind = bind_host()
    host = socket.gethostname()  # clients use the name (a site's NO_PROXY lists host names), resolving to `bind`
    preferred = int(sc.get("port") or 8000)
    stopped_by: list[str] = []
    current: list[subprocess.Popen] = []
    address: dict[str, Any] = {"model": model["name"], "job_id": job_id, "host": host, "started": _now()}
    code: int | None = None

    def on_signal(signum, _frame):
        stopped_by.append(signal.Signals(signum).name)
        for proc in current:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # Slurm's warning before the time limit (submitit asks for it 90 s ahead: on a 2-min partition that is half
    # the job) is no reason to stop: the server serves until the limit's TERM, by which time a relay's next job
    # has taken over.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    with open(folder / LOG, "ab", buffering=0) as log:
        for attempt in range(PORT_TRIES):
            if stopped_by:  # stopped between two starts
                break
            port = free_port(preferred if attempt == 0 else 0, bind)
            argv = server_command(model, port, bind)
            log.write(f"[{_now()}] job {job_id} on {host}: {' '.join(argv)}\n".encode())
            offset = log.tell()
            try:
                proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                _publish(folder, {"model": model["name"], "job_id": job_id, "host": host, "started": _now(),
                                  "ended_at": _now(), "exit_code": None,
                                  "error": f"cannot start {argv[0]}: {exc}"}, ending=True)
                raise ServeError(f"cannot start the model server {argv[0]!r}: {exc}") from exc
            current[:] = [proc]
            address = {"model": model["name"], "served_model": model["model"], "host": host, "port": port,
                       "bind": bind, "base_url": f"http://{host}:{port}/v1", "job_id": job_id,
                       "pid": proc.pid, "started": _now(), "command": argv, "port_tries": attempt + 1}
            if not successor or _healthy_or_exited(proc, address, stopped_by):
                _publish(folder, address)
                if successor:
                    log.write(f"[{_now()}] job {job_id}: healthy, took over {ADDRESS} (relay)\n".encode())
            code = proc.wait()
            if stopped_by or code == 0 or not _port_taken(folder / LOG, offset):
                break
            log.write(f"[{_now()}] port {port} was taken (EADDRINUSE): starting again on another port\n".encode())
        nxt = next_in_relay(Path(sweep_dir), model["name"], job_id)
        address.update(ended_at=_now(), exit_code=code, stopped_by=stopped_by[0] if stopped_by else None,
                       **({"next_job": nxt} if nxt else {}))
        if not _publish(folder, address, ending=True):
            log.write(f"[{_now()}] job {job_id} ended; {ADDRESS} left to the relay job that took over\n".encode())
    return 1 if code is None else code


# ---------------------------------------------------------------- the attempts' side


def health_problem(address: dict[str, Any], timeout_s: float = 5.0) -> str | None:
    """None when GET /health answers 200; else what went wrong (for the failure reason)."""
    url = f"http://{address['host']}:{address['port']}/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a site HTTP proxy
    try:
        with opener.open(url, timeout=timeout_s) as resp:
            return None if resp.status == 200 else f"{url} answered {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"


def wait_for_server(sweep_dir: Path, name: str, timeout_s: float, poll_s: float = 2.0) -> dict[str, Any]:
    """Wait for the address file and a healthy /health; the address, or ServeError with the reason."""
    folder = serve_dir(sweep_dir, name)
    job = current_job(sweep_dir, name)
    last = f"no {folder / ADDRESS} yet" + (f" (server job {job}: is it still queued? squeue -j {job})" if job else "")
    deadline = time.monotonic() + timeout_s
    while True:
        address = read_json(folder / ADDRESS)
        if address and address.get("ended_at") and address.get("next_job"):
            last = (f"server job {address.get('job_id')} ended; the next job of its relay, {address['next_job']}, "
                    f"has not published its address yet (squeue -j {address['next_job']})")
            address = None
        elif address and address.get("ended_at"):
            raise ServeError(f"model server {name} (job {address.get('job_id')}) ended at {address['ended_at']} "
                             f"(exit code {address.get('exit_code')}"
                             f"{', stopped by ' + address['stopped_by'] if address.get('stopped_by') else ''}"
                             f"{', ' + address['error'] if address.get('error') else ''}); see {folder / LOG}")
        if address:
            problem = health_problem(address)
            if problem is None:
                return address
            last = problem
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServeError(f"model server did not come up in {timeout_s:.0f} s: {last}; "
                             f"its log: {folder / LOG}")
        time.sleep(min(poll_s, left))


# ---------------------------------------------------------------- launcher and teardown side


def record_job(sweep_dir: Path, name: str, job_id: str, arrays: list[str], relay: list[str] | None = None) -> None:
    """job.json: the server job (the first of its relay), every job of the relay, and every agent array that
    uses it (across launches: a later launch that reuses any job of the relay keeps the record)."""
    path = serve_dir(sweep_dir, name) / JOB
    old = read_json(path) or {}
    old_relay = [str(j) for j in old.get("relay") or ([old["job_id"]] if old.get("job_id") else [])]
    same = str(job_id) in old_relay or (relay is not None and relay[:1] == old_relay[:1] != [])
    users = set(old.get("arrays", [])) if same else set()
    chain = [str(j) for j in relay] if relay else (old_relay if same else [str(job_id)])
    submitted = old.get("submitted_at") if same and old.get("submitted_at") else _now()
    atomic_write_json(path, {"model": name, "job_id": chain[0], "relay": chain, "submitted_at": submitted,
                             "arrays": sorted(users | set(arrays))})


def current_job(sweep_dir: Path, name: str) -> str | None:
    return (read_json(serve_dir(sweep_dir, name) / JOB) or {}).get("job_id")


def relay_jobs(sweep_dir: Path, name: str) -> list[str]:
    """Every server job of the relay in job.json, in order (one where the server fits MaxTime)."""
    job = read_json(serve_dir(sweep_dir, name) / JOB) or {}
    return [str(j) for j in job.get("relay") or ([job["job_id"]] if job.get("job_id") else [])]


def forget_address(sweep_dir: Path, name: str) -> None:
    """A new server is coming: drop the old address so no attempt talks to (or waits on) a dead one."""
    (serve_dir(sweep_dir, name) / ADDRESS).unlink(missing_ok=True)


def _add_teardown(folder: Path, entry: dict[str, Any]) -> None:
    """Append one entry to teardown.json (what was cancelled or kept, and when)."""
    record = read_json(folder / TEARDOWN) or {"teardowns": []}
    record["teardowns"].append(entry)
    atomic_write_json(folder / TEARDOWN, record)


def _state_after_cancel(job_ids: list[str], wait_s: float = 60) -> str:
    """`gone` once the server's jobs have left the queue, else their states after `wait_s`; `unknown` if
    squeue fails."""
    deadline = time.monotonic() + wait_s
    try:
        while slurm_queue.queue_states(job_ids) and time.monotonic() < deadline:
            time.sleep(1)
        left = slurm_queue.queue_states(job_ids)
    except slurm_queue.QueueUnavailable:
        return "unknown"
    return " ".join(f"{j} {state}" for j, state in sorted(left.items())) or "gone"


def teardown_task(sweep_dir: str | Path, name: str, own_arrays: list[str]) -> dict[str, Any]:
    """The teardown job: scancel the server (every job of its relay, queued ones too: `after:` would start
    a queued one once its predecessor is cancelled) unless agent arrays of a later launch still use it."""
    folder = serve_dir(Path(sweep_dir), name)
    job = read_json(folder / JOB) or {}
    job_id = job.get("job_id")
    relay = relay_jobs(Path(sweep_dir), name)
    others = [a for a in job.get("arrays", []) if a not in set(own_arrays)]
    entry: dict[str, Any] = {"at": _now(), "server_job": job_id, "after_arrays": own_arrays,
                             "teardown_job": os.environ.get("SLURM_JOB_ID")}
    try:
        busy = sorted({k.split("_")[0] for k in slurm_queue.queue_states(others)}) if others else []
    except slurm_queue.QueueUnavailable as exc:
        # Unknown whether later arrays still use it: an idle GPU server for a day costs more than a few
        # attempts that fail as infrastructure failures (and `hpc-mle resume` reruns with a new server).
        busy, entry["queue_error"] = [], str(exc)
    if not job_id:
        entry["action"] = f"nothing to cancel: no server job recorded in {folder / JOB}"
    elif busy:
        entry["action"] = f"kept: agent arrays {' '.join(busy)} still use it; their teardown cancels it"
    else:
        slurm_queue.cancel(relay)
        entry["action"] = "cancelled"
        if len(relay) > 1:
            entry["relay_jobs"] = relay
        entry["in_queue_after"] = _state_after_cancel(relay)
    _add_teardown(folder, entry)
    return entry


def start_local(sweep_dir: Path, name: str) -> subprocess.Popen:
    """cluster=local: the server as a subprocess of the launcher (`python -m hpc_mle.llm.serve`)."""
    forget_address(sweep_dir, name)
    folder = serve_dir(sweep_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    ensure_key(sweep_dir, name)
    proc = subprocess.Popen([sys.executable, "-m", "hpc_mle.llm.serve", str(sweep_dir), name],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    record_job(sweep_dir, name, f"local-{proc.pid}", [])
    return proc


def stop_local(proc: subprocess.Popen, name: str, sweep_dir: Path, grace_s: float = 30) -> None:
    """End a local server (TERM, then KILL after grace_s) and record it as the teardown job would."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _add_teardown(serve_dir(sweep_dir, name), {"at": _now(), "server_job": f"local-{proc.pid}",
                                               "action": "terminated", "exit_code": proc.returncode})


def main(argv: list[str] | None = None) -> None:
    """`python -m hpc_mle.llm.serve SWEEP_DIR MODEL_NAME`: run a sweep's model server here, in the foreground."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        sys.exit("usage: python -m hpc_mle.llm.serve SWEEP_DIR MODEL_NAME")
    sweep_dir, name = Path(args[0]), args[1]
    ids = [p.stem for p in (sweep_dir / "configs").glob("*.json")]
    models = sweep_models(sweep_dir, ids)
    if name not in models:
        sys.exit(f"{sweep_dir}: no served model named {name!r} in configs/ (served: {', '.join(models) or 'none'})")
    sys.exit(run_server(sweep_dir, models[name]))


if __name__ == "__main__":
    main()
