"""`hpc-mle doctor`: what a site allows, checked before a pilot rather than found out by failed attempts.

Each check is a plain function returning a `Check`: its state (ok, warn, fail, or skip where it does not
apply here), what was seen, and the fallback or the setting to change. The namespace checks read the
kernel's settings and then probe for real with the bwrap the attempts would use, as the calling user;
the Slurm checks read `scontrol show config`, cgroup.conf and the nodes (one `sinfo` call). With
`--on-node` the local checks also run as a tiny job on a compute node, whose kernel and PATH may differ
from the login node's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpc_mle import slurm_nodes

STATES = ("ok", "warn", "fail", "skip")
SYSCTL_ROOT = Path("/proc/sys")
PROBE_TIMEOUT_S = 20
# bwrap's messages when the kernel refuses a namespace (network: creating it, or configuring its loopback).
NAMESPACE_REFUSED = ("Creating new namespace failed", "loopback: Failed RTM_NEWADDR", "No permissions to create",
                     "setting up uid map", "Operation not permitted")
NETWORK_FALLBACK = ("sandbox.network=true (the agent shares the node's network; results are marked "
                    "network: shared), or ask the admins for user.max_net_namespaces > 0")
USERNS_FIX = ("ask the admins for unprivileged user namespaces (sysctl user.max_user_namespaces > 0; Debian: "
              "kernel.unprivileged_userns_clone=1; Ubuntu 24.04: an AppArmor profile for bwrap or "
              "kernel.apparmor_restrict_unprivileged_userns=0), or sandbox=apptainer (setuid install)")
# The apptainer options sandbox.apptainer_command passes; --no-eval needs Apptainer 1.1 or later.
APPTAINER_OPTIONS = ("--containall", "--cleanenv", "--no-privs", "--drop-caps", "--no-eval", "--writable-tmpfs",
                     "--env-file", "--network")
WCKEY_FIX = ("cluster.wckey=<one of your wckeys> (sacctmgr show user $USER withwckeys), or ask the admins for a "
             "wckey for your user (sacctmgr add user $USER wckey=NAME) or to drop wckeys from "
             "AccountingStorageEnforce in slurm.conf")


@dataclass(frozen=True)
class Check:
    """One finding: `fix` is the fallback or the setting to change (empty when nothing needs doing)."""

    name: str
    state: str
    seen: str
    fix: str = ""


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    """Run a probe; a missing or hung program reads as a failed run, never an exception."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def read_sysctl(name: str, root: Path = SYSCTL_ROOT) -> str | None:
    """`user.max_net_namespaces` -> its value, or None where the kernel has no such setting."""
    try:
        return (root / name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or proc.stdout or "").strip()
    return text.splitlines()[-1] if text else f"exit {proc.returncode}, no message"


# ---------------------------------------------------------------- namespaces


def user_namespaces(root: Path = SYSCTL_ROOT, run: Runner = _run) -> Check:
    """Unprivileged user namespaces: bwrap started by an ordinary user needs them."""
    settings = {k: read_sysctl(k, root) for k in ("user.max_user_namespaces", "kernel.unprivileged_userns_clone",
                                                  "kernel.apparmor_restrict_unprivileged_userns")}
    seen = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None) or "no namespace settings readable"
    blocked = [settings["user.max_user_namespaces"] == "0", settings["kernel.unprivileged_userns_clone"] == "0"]
    restricted = settings["kernel.apparmor_restrict_unprivileged_userns"] == "1"
    if shutil.which("bwrap") is None:
        state = "fail" if any(blocked) else ("warn" if restricted else "ok")
        return Check("user namespaces", state, seen + "; bwrap not installed, not probed", "" if state == "ok" else USERNS_FIX)
    proc = run(["bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"])
    if proc.returncode == 0:
        return Check("user namespaces", "ok", seen + "; bwrap --unshare-user: works")
    seen += f"; bwrap --unshare-user: {_last_line(proc)}"
    if os.geteuid() == 0:  # root's bwrap needs no user namespace; an ordinary user's does
        return Check("user namespaces", "warn", seen + " (root's attempts do not need one)", USERNS_FIX)
    return Check("user namespaces", "fail", seen, USERNS_FIX)


def network_namespaces(root: Path = SYSCTL_ROOT, run: Runner = _run) -> Check:
    """The sandbox's own network (bwrap --unshare-net, apptainer --net --network none) needs network namespaces."""
    value = read_sysctl("user.max_net_namespaces", root)
    seen = f"user.max_net_namespaces={value if value is not None else '(not readable)'}"
    if shutil.which("bwrap") is None:
        if value == "0":
            return Check("network namespaces", "fail", seen + "; bwrap not installed, not probed", NETWORK_FALLBACK)
        return Check("network namespaces", "skip", seen + "; bwrap not installed, not probed")
    proc = run(["bwrap", "--unshare-user", "--unshare-net", "--ro-bind", "/", "/", "true"])
    if proc.returncode == 0:
        return Check("network namespaces", "ok", seen + "; bwrap --unshare-net: works")
    why = _last_line(proc)
    seen += f"; bwrap --unshare-net: {why}"
    if value == "0" or any(m in why for m in NAMESPACE_REFUSED):
        return Check("network namespaces", "fail", seen, NETWORK_FALLBACK)
    return Check("network namespaces", "fail", seen, "run the probe by hand: bwrap --unshare-user --unshare-net "
                 "--ro-bind / / true; " + NETWORK_FALLBACK)


# ---------------------------------------------------------------- runtimes


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def bwrap_version(run: Runner = _run) -> Check:
    """bwrap 0.6 or later sizes /dev/shm (`--size`); older ones (RHEL 8: 0.4) leave it at half the RAM."""
    if shutil.which("bwrap") is None:
        return Check("bwrap", "warn", "not on PATH", "install bubblewrap, or sandbox=apptainer")
    out = run(["bwrap", "--version"]).stdout.strip()
    if _version(out) >= (0, 6):
        return Check("bwrap", "ok", out)
    return Check("bwrap", "warn", f"{out or 'version unknown'}: /dev/shm cannot be sized (needs 0.6)",
                 "a newer bubblewrap, or sandbox.limits.memory_gb to bound the agent's memory")


def apptainer_options(run: Runner = _run) -> Check:
    """Apptainer's version and the exec options the sandbox passes (--no-eval needs 1.1)."""
    exe = shutil.which("apptainer") or shutil.which("singularity")
    if exe is None:
        return Check("apptainer", "skip", "not on PATH (needed only for sandbox=apptainer)",
                     "module load apptainer (sites name it differently) if you use sandbox=apptainer")
    version = run([exe, "--version"]).stdout.strip()
    helptext = run([exe, "exec", "--help"]).stdout
    missing = [o for o in APPTAINER_OPTIONS if o not in helptext]
    if missing:
        return Check("apptainer", "fail", f"{version}: exec lacks {' '.join(missing)}",
                     "Apptainer 1.1 or later (module load apptainer/<newer>), or sandbox=bwrap")
    return Check("apptainer", "ok", f"{version}: exec has {' '.join(APPTAINER_OPTIONS)}")


# ---------------------------------------------------------------- Slurm


def slurm_config(run: Runner = _run) -> dict[str, str] | None:
    """`scontrol show config` as {key: value}; None where Slurm does not answer here."""
    if shutil.which("scontrol") is None:
        return None
    proc = run(["scontrol", "show", "config"])
    if proc.returncode != 0:
        return None
    pairs = (line.split("=", 1) for line in proc.stdout.splitlines() if " = " in line)
    return {k.strip(): v.strip() for k, v in pairs}


def cgroup_conf(config: dict[str, str]) -> dict[str, str] | None:
    """cgroup.conf next to the slurm.conf scontrol reports, as {key lowercased: value}; None where unreadable."""
    path = Path(config.get("SLURM_CONF", "/etc/slurm/slurm.conf")).with_name("cgroup.conf")
    try:
        text = path.read_text()
    except OSError:
        return None
    pairs = (line.split("#", 1)[0].split("=", 1) for line in text.splitlines())
    return {p[0].strip().lower(): p[1].strip() for p in pairs if len(p) == 2}


def gpu_binding(config: dict[str, str] | None, gpus_on_nodes: bool) -> Check:
    """Under `--nv` every GPU of the node is visible: only Slurm's device cgroup keeps an attempt to its own."""
    if not gpus_on_nodes:
        return Check("GPU binding", "skip", "no GPUs on this cluster's nodes or here")
    if config is None:
        return Check("GPU binding", "warn", "Slurm not readable here; apptainer --nv and bwrap bind every GPU device",
                     "run on a login node (or --on-node) to read ConstrainDevices")
    cgroup = cgroup_conf(config)
    if cgroup is None:
        return Check("GPU binding", "warn", "cgroup.conf not readable: ConstrainDevices unknown",
                     "ask the admins whether cgroup.conf has ConstrainDevices=yes; without it an attempt can use "
                     "every GPU of its node")
    value = cgroup.get("constraindevices", "no")
    if value.lower() == "yes" and "cgroup" in config.get("TaskPlugin", "") + config.get("ProctrackType", ""):
        return Check("GPU binding", "ok", f"ConstrainDevices={value}: an attempt sees only the GPUs Slurm gave it")
    return Check("GPU binding", "warn", f"ConstrainDevices={value}, TaskPlugin={config.get('TaskPlugin', '?')}: "
                 "with --nv every GPU of the node is visible to the agent",
                 "ask the admins for ConstrainDevices=yes in cgroup.conf (with task/cgroup), or whole nodes per "
                 "attempt (cluster.additional.exclusive=true)")


def job_requeue(config: dict[str, str] | None) -> Check:
    """JobRequeue decides whether a preempted attempt comes back by itself."""
    if config is None:
        return Check("JobRequeue", "skip", "Slurm not readable here")
    value = config.get("JobRequeue", "?")
    if value == "0":
        return Check("JobRequeue", "warn", "JobRequeue=0: a preempted or failed node's attempt stays down",
                     "hpc-mle resume after preemptions, or ask the admins for JobRequeue=1")
    return Check("JobRequeue", "ok", f"JobRequeue={value}: jobs requeue unless they ask --no-requeue")


def user_wckeys(run: Runner = _run) -> list[str] | None:
    """The calling user's wckeys in Slurm's accounting; None where sacctmgr does not answer."""
    if shutil.which("sacctmgr") is None:
        return None
    import getpass

    proc = run(["sacctmgr", "-nP", "show", "wckey", f"user={getpass.getuser()}", "format=name"])
    return sorted({w.strip().lstrip("*") for w in proc.stdout.split()}) if proc.returncode == 0 else None


def wckeys(config: dict[str, str] | None, run: Runner = _run) -> Check:
    """AccountingStorageEnforce with wckeys rejects a job whose wckey the user lacks (submitit's own default is
    `submitit`; hpc-mle sends cluster.wckey, or none so that the user's default applies)."""
    if config is None:
        return Check("wckey enforcement", "skip", "Slurm not readable here")
    value = config.get("AccountingStorageEnforce", "none")
    if "wckey" not in value.lower():
        return Check("wckey enforcement", "ok", f"AccountingStorageEnforce={value}")
    mine = user_wckeys(run)
    listed = "unknown (sacctmgr did not answer)" if mine is None else ", ".join(mine) or "none"
    seen = f"AccountingStorageEnforce={value}; your wckeys: {listed}"
    if mine:
        return Check("wckey enforcement", "warn", seen, f"cluster.wckey={mine[0]} (or another of yours) unless your "
                     "default wckey is set")
    return Check("wckey enforcement", "warn" if mine is None else "fail", seen, WCKEY_FIX)


def partitions(nodes: list[slurm_nodes.Node] | None, error: str = "") -> list[Check]:
    """Per partition: node sizes and MaxTime, which the attempts' requests must fit."""
    if nodes is None:
        return [Check("partitions", "skip", error or "Slurm not readable here")]
    if not nodes:
        return [Check("partitions", "fail", "sinfo lists no nodes", "check SLURM_CONF and the controller")]
    out = []
    for part in sorted({n.partition for n in nodes}):
        members = [n for n in nodes if n.partition == part]
        limit = members[0].max_time_min
        sizes = sorted({(n.cpus, n.mem_mb, sum(n.gpus.values())) for n in members})
        shown = "; ".join(f"{c} CPUs {m} MB {g} GPUs" for c, m, g in sizes)
        max_time = "unlimited" if limit is None else f"{limit:g} min"
        out.append(Check(f"partition {part}", "ok", f"{len(members)} node(s): {shown}; MaxTime {max_time}"))
    return out


# ---------------------------------------------------------------- runs


def local_checks(root: Path = SYSCTL_ROOT, run: Runner = _run) -> list[Check]:
    """The cheap checks of this machine (namespaces, runtimes): the preflight runs these."""
    return [user_namespaces(root, run), network_namespaces(root, run), bwrap_version(run), apptainer_options(run)]


def slurm_checks(run: Runner = _run) -> list[Check]:
    """The site's Slurm settings and nodes, read from here."""
    config = slurm_config(run)
    try:
        nodes, error = (slurm_nodes.query_nodes(), "") if config is not None else (None, "")
    except RuntimeError as exc:
        nodes, error = None, str(exc)
    has_gpus = bool(nodes and any(n.gpus for n in nodes)) or bool(_nvidia_devices())
    return [gpu_binding(config, has_gpus), job_requeue(config), wckeys(config), *partitions(nodes, error)]


def _nvidia_devices() -> list[str]:
    from hpc_mle.sandbox import nvidia_devices

    return [d for d in nvidia_devices() if re.fullmatch(r"/dev/nvidia\d+", d)]


def node_report() -> list[dict[str, str]]:
    """What the compute-node job returns (plain dicts: they travel through submitit's pickles)."""
    host = os.uname().nodename
    return [{**asdict(c), "where": host} for c in local_checks()]


def on_node(folder: Path, cluster: Any, partition: str | None = None, timeout_s: float = 600) -> list[Check]:
    """The local checks as a tiny Slurm job on a compute node, submitted as the attempts are (the cluster config's
    account, qos, setup lines and wckey handling); a fail row when it does not come back."""
    from hpc_mle import slurm

    ex = slurm._executor(folder, cluster, "hpc-mle-doctor")
    ex.update_parameters(timeout_min=5, cpus_per_task=1, mem_gb=1, **({"slurm_partition": partition} if partition else {}))
    try:
        job = ex.submit(node_report)
    except Exception as exc:  # submitit raises its own error types for sbatch's refusals
        return [Check("compute node", "fail", f"sbatch refused the doctor job: {str(exc).strip()[-300:]}",
                      "check cluster.partition/account and the wckey row above")]
    deadline = time.monotonic() + timeout_s
    while not job.done() and time.monotonic() < deadline:
        time.sleep(1)
    if not job.done():
        job.cancel(check=False)
        return [Check("compute node", "fail", f"job {job.job_id} did not run within {timeout_s:g} s",
                      "squeue -j " + str(job.job_id) + " shows why it waits (partition, limits)")]
    try:
        rows = job.result()
    except Exception as exc:  # the job's own failure, as submitit re-raises it
        return [Check("compute node", "fail", f"job {job.job_id} failed: {str(exc).strip()[-300:]}",
                      f"read {folder}/{job.job_id}/ for the job's log")]
    return [Check(f"{r['name']} [{r['where']}]", r["state"], r["seen"], r["fix"]) for r in rows]


def run_all(slurm: bool = True) -> list[Check]:
    """Every check readable from here (Slurm ones only where `slurm`)."""
    return local_checks() + (slurm_checks() if slurm else [])


def exit_code(checks: list[Check]) -> int:
    """0 when every check is ok, warn or skip; 1 on a fail."""
    return 1 if any(c.state == "fail" for c in checks) else 0
