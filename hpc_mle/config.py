"""The typed schema of `conf/`: Hydra composes YAML groups into these dataclasses.

Because the primary config starts from this schema, a typo (`hardware.gpu=2`, `cluster.partiton=`)
fails at once with the key named, before anything is planned or submitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class BudgetConf:
    """Per-attempt limits the metering proxy enforces (null = no limit)."""

    max_tokens: int | None = None  # input + output tokens over the whole attempt
    max_cost_usd: float | None = None


@dataclass
class ServeConf:
    """How to serve an open model on the cluster (`serve: vllm`): one server job per model per sweep.

    The server job writes `<sweep>/serve/<model name>/address.json`; attempts wait (up to `wait`) for
    it and the server's /health, then talk to `http://host:port/v1`. A teardown job cancels it.
    """

    gpus: int = 1  # also vLLM's --tensor-parallel-size
    gpu_type: str | None = None
    cpus: int = 8
    mem_gb: int = 64
    time: str = "24h"  # the server job's --time; it is cancelled by a teardown job when the attempts end
    port: int = 8000  # a free one is chosen at start if this one is taken on the node
    image: str | None = None  # an Apptainer image with vLLM; null = `vllm` on the node's PATH
    args: list[str] = field(default_factory=list)  # extra `vllm serve` arguments
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the server, e.g. HF_HOME
    wait: str = "30m"  # how long an attempt waits for the server; added to the attempts' Slurm --time
    # For tests only: a program run in place of `vllm serve` (it gets the same arguments). null = vLLM.
    command: list[str] | None = None


@dataclass
class ModelConf:
    """An LLM the scaffold drives (`none` for agents without one).

    The key never leaves the host: the metering proxy reads `api_key_env` from its own environment
    and the sandbox only gets the proxy's address and a per-attempt token.
    """

    name: str = "none"
    provider: str = "none"  # none | openai | anthropic | openai-compatible | vllm
    model: str | None = None
    api_key_env: str | None = None  # the variable holding the key; its value never leaves the host
    base_url: str | None = None
    api: str = "chat"  # chat (chat completions) | responses | messages (Anthropic)
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, max_tokens, ...
    price: str | None = None  # key of hpc_mle/llm/prices.csv; null = `model`
    budget: BudgetConf = field(default_factory=BudgetConf)
    serve: str | None = None  # null | vllm
    serve_conf: ServeConf = field(default_factory=ServeConf)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScaffoldConf:
    name: str = MISSING
    command: list[str] = MISSING
    agent_files: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    venv: str | None = None  # a scaffold venv built by `hpc-mle scaffolds venv NAME` (bwrap/none sandboxes)


@dataclass
class BenchmarkConf:
    name: str = MISSING
    split: str = MISSING  # lite | medium | high | all | dev | mini
    competitions: list[str] | None = None  # a subset of the split; null = all of it
    exclude_status: list[str] = field(default_factory=lambda: ["excluded"])


@dataclass
class RuntimeConf:
    name: str = MISSING
    time_limit: str = MISSING  # the agent's budget: 10m, 24h, 100h
    snapshot_interval: str = "1h"
    margin: str = "15m"  # added to the budget for Slurm's --time: staging, teardown, the warning signal


@dataclass
class HardwareConf:
    name: str = MISSING
    gpus: int = 0
    cpus: int = 2
    mem_gb: int = 8
    gpu_type: str | None = None  # a gres type (a100, h100) where the site needs one
    label: str | None = None  # what HARDWARE tells the agent; null = detected on the node


@dataclass
class LimitsConf:
    """What one attempt may use of the host, whoever starts it (enforced outside the agent's reach)."""

    disk_gb: float = 50.0  # all of its writable folders together (submission, logs, code, agent, /tmp)
    file_size_gb: float = 20.0  # any one file it writes (RLIMIT_FSIZE)
    processes: int = 4096  # processes and threads of the agent's uid (RLIMIT_NPROC)
    open_files: int = 65536  # per process (RLIMIT_NOFILE)
    memory_gb: float | None = None  # null: Slurm's cgroup on a cluster, else the whole machine
    files: int = 1_000_000  # files and folders in its writable folders (a quota counts bytes, not inodes)
    shm_gb: float = 16.0  # /dev/shm, which is memory (DataLoader workers use it); the rest of / is read-only
    agent_uid: int = 65534  # started as root, the agent runs as this unprivileged uid (nobody)


@dataclass
class SandboxConf:
    kind: str = "bwrap"  # bwrap | apptainer | none
    image: str | None = None  # apptainer: the .sif (else the scaffold's image)
    network: bool = False
    limits: LimitsConf = field(default_factory=LimitsConf)


@dataclass
class ClusterConf:
    name: str = MISSING
    kind: str = "local"  # local: run here and wait; slurm: submit and return
    max_parallel: int = 2  # local: attempts at once
    partition: str | None = None
    data_partition: str | None = None  # `prepare --slurm`: a partition whose nodes reach the internet
    data_time: str = "12h"  # `prepare --slurm`: the download job's --time
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpu_syntax: str = "gres"  # gres (--gres=gpu[:type]:N) | gpus-per-node (--gpus-per-node=N)
    setup: list[str] = field(default_factory=list)  # lines run before the task, e.g. module load apptainer
    array_throttle: int = 64  # at most this many tasks of one array run at once (%N)
    max_restarts: int = 3  # requeues of one attempt (preemption, node failure) before giving up
    signal_delay_s: int = 120  # Slurm warns this long before --time so the attempt can save its work
    grading_tasks: int = 8  # the grading array's size (each grades a slice of the attempts)
    additional: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH --key=value


@dataclass
class GradingConf:
    """How a sweep's submissions are graded: v1 (as MLE-bench v1) or corrected (grading.GRADING_MODES)."""

    mode: str = "v1"


@dataclass
class AnalysisConf:
    """How the analysis job aggregates: missing (competition, seed) cells (analysis.MISSING_MODES)."""

    missing: str = "pad"


@dataclass
class Config:
    model: ModelConf = MISSING
    scaffold: ScaffoldConf = MISSING
    benchmark: BenchmarkConf = MISSING
    runtime: RuntimeConf = MISSING
    hardware: HardwareConf = MISSING
    sandbox: SandboxConf = MISSING
    cluster: ClusterConf = MISSING
    grading: GradingConf = field(default_factory=GradingConf)
    analysis: AnalysisConf = field(default_factory=AnalysisConf)
    seed: int = 0
    output_root: str = "runs"
    sweep_name: str | None = None  # null: derived from the sweep, so relaunching finds the same folder
    data_dir: str | None = None  # null: $HPC_MLE_DATA or the user cache dir
    dry_run: bool = False
    retry_agent_failures: bool = False


def register() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)


register()
