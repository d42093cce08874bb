"""What an attempt's harness records of its node at the start (telemetry.hardware): on this machine (no GPU:
none seen, the CPUs of the affinity mask, the memory), and parse-level with a fake nvidia-smi printing two H100s;
then the results columns, the report's provenance table, provenance.json and the disclosure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from hpc_mle import analysis as an
from hpc_mle import export, telemetry

H100 = "NVIDIA H100 80GB HBM3"
FAKE_SMI = f"""#!/bin/sh
case "$*" in
  *name,driver_version*) printf '{H100}, 550.54.15\\n{H100}, 550.54.15\\n' ;;
  *utilization.gpu,memory.used*) printf '37, 1024\\n5, 2048\\n' ;;
  *) exit 1 ;;
esac
"""


def _sampled(gpus: tuple[str, ...], tmp_path: Path) -> dict:
    """A Sampler's summary over a short-lived process: what runner puts into status.json `telemetry`."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        sampler = telemetry.Sampler(tmp_path / "telemetry.csv", proc.pid, gpus, 0.1, lambda: 0.0)
        sampler.start()
        time.sleep(0.35)
        sampler.stop()
    finally:
        proc.kill()
        proc.wait()
    return sampler.summary()


def _sweep(tmp_path: Path, summary: dict) -> Path:
    """A one-attempt sweep whose status.json holds that telemetry summary (as the runner writes it)."""
    sweep = tmp_path / "s"
    out = sweep / "attempts" / "a1"
    out.mkdir(parents=True)
    pd.DataFrame([{"id": "a1", "competition_id": "mini-churn", "scaffold": "aide", "model": "gpt4o", "seed": 0,
                   "runtime": "10m", "hardware": "gpu2", "benchmark": "mini", "gpus": 2, "cpus": 16, "mem_gb": 120,
                   "gpu_type": "h100"}]).to_csv(sweep / "manifest.csv", index=False)
    (out / "status.json").write_text(json.dumps({"state": "done", "ended_at": "2026-11-30T10:00:00+00:00",
                                                 "cpus": summary["hardware"]["cpus"], "telemetry": summary}))
    (out / "config.json").write_text(json.dumps({"hardware": None, "gpus": None}))
    return sweep


def test_this_machine_no_gpu_seen_with_its_cpus_and_memory(tmp_path):
    summary = _sampled((), tmp_path)
    hw = summary["hardware"]
    assert hw["gpu_names"] == [] and hw["gpu_count"] == 0 and hw["gpu_label"] == "none"
    assert hw["driver_version"] is None and hw["cuda_visible_devices"] == ""
    assert hw["cpus"] == sorted(os.sched_getaffinity(0)) and hw["cpu_count"] == len(os.sched_getaffinity(0))
    assert hw["memory_total_mib"] == round(psutil.virtual_memory().total / 2**20)
    limit = telemetry._cgroup_memory_limit()
    assert hw["memory_mib"] == round(min(psutil.virtual_memory().total, limit or 2**63) / 2**20)
    assert hw["node"] == os.uname().nodename
    results = an.load_results(_sweep(tmp_path, summary))
    row = results.iloc[0]
    assert row["gpu_seen"] == "none" and row["gpus_seen"] == 0 and row["cpus_seen"] == len(os.sched_getaffinity(0))
    table = export.provenance_table(results)
    assert table.loc[0, "GPU model seen"] == "none" and table.loc[0, "gpus granted"] == "2"  # planned 2, saw none


def test_two_h100s_from_a_fake_nvidia_smi(tmp_path, monkeypatch):
    if telemetry._nvml() is not None:
        pytest.skip("NVML answers here: the real GPUs are read, not the fake nvidia-smi")
    (tmp_path / "bin").mkdir()
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    summary = _sampled(("0", "1"), tmp_path)
    hw = summary["hardware"]
    assert hw["gpu_names"] == [H100, H100] and hw["gpu_label"] == f"2 x {H100}"
    assert hw["driver_version"] == "550.54.15" and hw["cuda_visible_devices"] == "0,1" and hw["gpus_granted"] == 2
    assert summary["gpu1_util_percent_mean"] == 5.0 and summary["gpu1_mem_mib_max"] == 2048.0
    sweep = _sweep(tmp_path, summary)
    results = an.load_results(sweep)
    assert results.loc[0, "gpu_seen"] == f"2 x {H100}" and results.loc[0, "gpu_driver"] == "550.54.15"
    assert export.provenance_table(results).loc[0, "GPU model seen"] == f"2 x {H100}"
    prov = export.provenance([sweep], results, "pad")
    assert prov["gpus_seen"] == [f"2 x {H100}"] and prov["attempts"][0]["gpu_names"] == [H100, H100]
    assert f"GPUs seen by the attempts at their start: 2 x {H100} (driver 550.54.15); planned as gpu2, h100" \
        in export.disclosure(prov)


def test_the_memory_limit_is_read_from_cgroup_v2_and_v1(tmp_path):
    """Slurm's task/cgroup puts --mem on the job's cgroup; the step below it says `max` (v2) or ~2^63 (v1)."""
    v2 = tmp_path / "v2"
    for rel, value in (("", "max"), ("job_1", "8589934592"), ("job_1/step_0", "max")):
        (v2 / rel).mkdir(parents=True, exist_ok=True)
        (v2 / rel / "memory.max").write_text(value + "\n")
    (tmp_path / "cgroup2").write_text("0::/job_1/step_0\n")
    assert telemetry._cgroup_memory_limit(str(tmp_path / "cgroup2"), str(v2)) == 8 * 2**30
    v1 = tmp_path / "v1" / "memory" / "slurm" / "job_2"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("4294967296\n")
    (v1.parent / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "cgroup1").write_text("5:cpuset:/\n4:memory:/slurm/job_2\n")
    assert telemetry._cgroup_memory_limit(str(tmp_path / "cgroup1"), str(tmp_path / "v1")) == 4 * 2**30
    (tmp_path / "none").write_text("0::/\n")
    assert telemetry._cgroup_memory_limit(str(tmp_path / "none"), str(tmp_path / "empty")) is None
