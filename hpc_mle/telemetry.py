"""What an attempt used: CPU and memory of its process tree, and each granted GPU's use, over time.

Sampled from outside the sandbox. GPUs are read by device (NVML through `nvidia-ml-py`, else
`nvidia-smi`), not by process: inside a pid namespace the per-process lists are empty. Rows go to
`telemetry.csv` as they are taken; `summary()` goes into `status.json`, with `hardware()`: what the
attempt was given (GPU models and driver, CPUs, memory, node), read once when sampling starts.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no library, no driver, no GPU: telemetry goes on without GPUs
        return None


def _smi_query(fields: str, gpus: tuple[str, ...]) -> list[list[str]]:
    if not shutil.which("nvidia-smi"):
        return []
    cmd = ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"]
    if gpus:
        cmd.append(f"--id={','.join(gpus)}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [[f.strip() for f in line.split(",")] for line in out.stdout.strip().splitlines() if line.strip()]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_identity(gpus: tuple[str, ...], nvml=None) -> tuple[list[str], str | None]:
    """(model name of each granted GPU, driver version) by NVML, else nvidia-smi; ([], None) when neither sees one."""
    if not gpus:
        return [], None
    nvml = nvml or _nvml()
    if nvml is not None:
        try:
            names = [_text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(int(g)))) for g in gpus]
            return names, _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:  # an index NVML does not know (a UUID in CUDA_VISIBLE_DEVICES): ask nvidia-smi
            pass
    rows = [r for r in _smi_query("name,driver_version", gpus) if len(r) == 2 and r[0]]
    return [r[0] for r in rows], (rows[0][1] if rows else None)


def gpu_names(gpus: tuple[str, ...]) -> list[str]:
    return gpu_identity(gpus)[0]


def seen_label(names: list[str]) -> str:
    """The GPUs seen, for tables: "2 x NVIDIA H100 80GB HBM3", "NVIDIA A100, NVIDIA H100", or "none"."""
    if not names:
        return "none"
    return f"{len(names)} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)


def _cgroup_memory_limit(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The tightest memory limit (bytes) of this process's cgroup and its ancestors (v2 memory.max, v1
    memory.limit_in_bytes), or None when there is none: Slurm's task/cgroup puts the job's --mem there."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        base, name = ((Path(root), "memory.max") if controllers == "" else
                      (Path(root) / "memory", "memory.limit_in_bytes") if "memory" in controllers.split(",") else
                      (None, ""))
        if base is None:
            continue
        folder = base / path.lstrip("/")
        for level in [folder, *folder.parents]:
            try:
                text = (level / name).read_text().strip()
            except OSError:
                text = ""
            if text.isdigit() and int(text) < 2**60:  # v1 writes ~2^63 for "no limit", v2 writes "max"
                limits.append(int(text))
            if level == base:
                break
    return min(limits) if limits else None


def hardware(gpus: tuple[str, ...], nvml=None) -> dict:
    """What this attempt was given, read once by the harness at its start (never from a file the agent can write):
    the node, CUDA_VISIBLE_DEVICES as granted, the model and driver of each GPU seen (none without a driver:
    an empty list, not the planned label), the CPUs of the affinity mask and the memory it may use."""
    names, driver = gpu_identity(gpus, nvml)
    cpus = sorted(os.sched_getaffinity(0))
    total = psutil.virtual_memory().total
    limit = _cgroup_memory_limit()
    return {"node": os.uname().nodename, "cuda_visible_devices": ",".join(gpus), "gpus_granted": len(gpus),
            "gpu_names": names, "gpu_count": len(names), "gpu_label": seen_label(names), "driver_version": driver,
            "cpus": cpus, "cpu_count": len(cpus), "memory_total_mib": round(total / 2**20),
            "memory_limit_mib": round(limit / 2**20) if limit else None,
            "memory_mib": round(min(total, limit or total) / 2**20)}


def describe_hardware(gpus: tuple[str, ...]) -> str:
    """What MLE-bench's HARDWARE says: e.g. "2 NVIDIA H100 80GB HBM3", or "a CPU" without GPUs."""
    names = gpu_names(gpus)
    if not names:
        return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}" if gpus else "a CPU"
    if len(set(names)) == 1:
        return f"{len(names)} {names[0]}"
    return ", ".join(names)


def read_gpus(gpus: tuple[str, ...], nvml) -> list[tuple[float, float]]:
    """(utilisation %, memory used MiB) per granted GPU."""
    if not gpus:
        return []
    if nvml is not None:
        try:
            rows = []
            for g in gpus:
                h = nvml.nvmlDeviceGetHandleByIndex(int(g))
                rows.append((float(nvml.nvmlDeviceGetUtilizationRates(h).gpu),
                             nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20))
            return rows
        except Exception:
            pass
    return [(float(r[0]), float(r[1])) for r in _smi_query("utilization.gpu,memory.used", gpus)
            if len(r) == 2 and r[0].replace(".", "").isdigit()]


class Sampler(threading.Thread):
    """Samples the tree under `pid` every `interval` seconds into a CSV until stopped."""

    def __init__(self, path, pid: int, gpus: tuple[str, ...], interval: float, elapsed: Callable[[], float]):
        super().__init__(name="telemetry", daemon=True)
        self.path, self.pid, self.gpus, self.interval, self.elapsed = path, pid, gpus, interval, elapsed
        self.stop_event = threading.Event()
        self.rows: list[dict] = []
        self.nvml = _nvml() if gpus else None
        self.fields = ["time", "elapsed_s", "cpu_percent", "rss_mib", "processes"]
        for i in range(len(gpus)):
            self.fields += [f"gpu{i}_util_percent", f"gpu{i}_mem_mib"]
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_last: tuple[float, float] | None = None  # (monotonic time, CPU seconds of the tree)
        self.hardware: dict | None = None  # `hardware()`, taken when the thread starts

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            current = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        # Keep Process objects between samples (one object per process, whatever psutil caches on it).
        self._procs = {p.pid: self._procs.get(p.pid, p) for p in current}
        return list(self._procs.values())

    def _cpu_percent(self, seconds: float) -> float:
        """CPU % of the tree since the previous sample, from cumulative CPU times.

        psutil's cpu_percent() returns 0.0 on its first call for each process, so a process born after the
        previous sample (the agent's training script, started after the sandbox) would count as idle, and one
        that lived less than an interval would never count. CPU times (own and of reaped children) count both."""
        now = time.monotonic()
        last, self._cpu_last = self._cpu_last, (now, seconds)
        if last is None or now <= last[0]:
            return 0.0
        return max(0.0, seconds - last[1]) / (now - last[0]) * 100

    def sample(self) -> dict:
        seconds = rss = 0.0
        procs = self._tree()
        for p in procs:
            try:
                times = p.cpu_times()
                seconds += times.user + times.system + times.children_user + times.children_system
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        cpu = self._cpu_percent(seconds)
        row = {"time": round(time.time(), 3), "elapsed_s": round(self.elapsed(), 3), "cpu_percent": round(cpu, 1),
               "rss_mib": round(rss / 2**20, 1), "processes": len(procs)}
        for i, (util, mem) in enumerate(read_gpus(self.gpus, self.nvml)):
            row[f"gpu{i}_util_percent"], row[f"gpu{i}_mem_mib"] = util, round(mem, 1)
        return row

    def run(self) -> None:
        try:
            self.hardware = hardware(self.gpus, self.nvml)
        except Exception as exc:  # noqa: BLE001 -- what the node is never stops the sampling; the summary says why
            self.hardware = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            self._record()
        except OSError as exc:  # a full disk: the runner's own status says so; the samples so far still count
            print(f"hpc-mle: telemetry stopped, cannot write {self.path}: {exc}", file=sys.stderr, flush=True)

    def _record(self) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if fh.tell() == 0:
                writer.writeheader()
            self.sample()  # the CPU-time baseline
            while not self.stop_event.wait(self.interval):
                row = self.sample()
                self.rows.append(row)
                writer.writerow(row)
                fh.flush()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=max(5.0, self.interval * 2))

    def summary(self) -> dict:
        rows = self.rows
        out = {"samples": len(rows), "interval_s": self.interval}
        if self.hardware is not None:
            out["hardware"] = self.hardware
        if not rows:
            return out
        out.update(cpu_percent_mean=round(sum(r["cpu_percent"] for r in rows) / len(rows), 1),
                   cpu_percent_max=max(r["cpu_percent"] for r in rows),
                   rss_mib_max=max(r["rss_mib"] for r in rows))
        for i in range(len(self.gpus)):
            utils = [r[f"gpu{i}_util_percent"] for r in rows if f"gpu{i}_util_percent" in r]
            mems = [r[f"gpu{i}_mem_mib"] for r in rows if f"gpu{i}_mem_mib" in r]
            if utils:
                out[f"gpu{i}_util_percent_mean"] = round(sum(utils) / len(utils), 1)
                out[f"gpu{i}_mem_mib_max"] = max(mems)
        return out
