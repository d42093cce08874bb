#!/usr/bin/env bash
# OpenHands (openhands-ai 0.62.0, CodeActAgent) under the MLE-bench agent contract, headless.
# Upstream ran OpenHands with its Docker sandbox (privileged, Docker-in-Docker); clusters have no
# Docker, so the agent's actions run through OpenHands' "cli" runtime directly inside our sandbox
# (bwrap or Apptainer), which is the isolation. The workspace is /home, so the contract's paths
# (/home/data, /home/submission, /home/code) are the ones the agent sees.
# Extra arguments go to `python -m openhands.core.main`.
set -euo pipefail

VENV="${HPC_MLE_VENV:-/opt/venvs/openhands}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "start.sh: no OpenHands environment at $VENV; use the image built from containers/openhands.def" >&2
    exit 3
fi
if [ -z "${HPC_MLE_MODEL:-}" ]; then
    echo "start.sh: OpenHands needs a language model: launch with model=<name> (conf/model)" >&2
    exit 3
fi
LOGS_DIR="${LOGS_DIR:-/home/logs}"
AGENT_DIR="${AGENT_DIR:-/home/agent}"
INSTRUCTIONS=/home/instructions.txt   # the harness copy when the contract paths are not mounted (sandbox=none)
[ -f "$INSTRUCTIONS" ] || INSTRUCTIONS="${HPC_MLE_HARNESS:-/opt/hpc-mle}/instructions.txt"
SECS="${TIME_LIMIT_SECS:-86400}"
STEPS="${STEP_LIMIT:-500}"
RESERVE=$(( SECS / 20 < 120 ? SECS / 20 : 120 ))   # left for copying out before the runner stops us
TASK="$AGENT_DIR/openhands_task.md"
mkdir -p "$LOGS_DIR/openhands"

# LiteLLM names: the provider prefix picks the protocol; the base URL is the metering proxy.
case "${HPC_MLE_PROVIDER:-openai}" in
    anthropic) export LLM_MODEL="anthropic/$HPC_MLE_MODEL" LLM_BASE_URL="${ANTHROPIC_BASE_URL:-}" \
                      LLM_API_KEY="${ANTHROPIC_API_KEY:-}" ;;
    *)         export LLM_MODEL="openai/$HPC_MLE_MODEL" LLM_BASE_URL="${OPENAI_BASE_URL:-}" \
                      LLM_API_KEY="${OPENAI_API_KEY:-}" ;;
esac
export RUNTIME=cli WORKSPACE_BASE=/home MAX_ITERATIONS="$STEPS"
export AGENT_ENABLE_BROWSING=false AGENT_ENABLE_JUPYTER=false   # no network; the cli runtime has no IPython
export FILE_STORE_PATH="$LOGS_DIR/openhands/file_store" SAVE_TRAJECTORY_PATH="$LOGS_DIR/openhands/trajectory.json"
export CACHE_DIR="${TMPDIR:-/tmp}/openhands-cache" LOG_ALL_EVENTS=true

{
    cat "$INSTRUCTIONS"
    echo
    echo "ADDITIONAL NOTES"
    echo "------"
    echo "- Hardware: ${HARDWARE:-a CPU}."
    echo "- Total runtime: $((SECS / 3600))hrs $((SECS % 3600 / 60))mins $((SECS % 60))secs, at most ${STEPS} steps."
    echo "- Write /home/submission/submission.csv early and improve it; keep your code in /home/code."
    echo "- You cannot ask for help or wait for a reply: work on your own until the time is up."
} > "$TASK"

echo "start.sh: OpenHands CodeActAgent with $LLM_MODEL, ${STEPS} steps, ${SECS}s"
cd /home
status=0
timeout --signal=TERM --kill-after=30 "$((SECS - RESERVE))" \
    "$PY" -m openhands.core.main -c CodeActAgent -f "$TASK" -i "$STEPS" -n mlebench "$@" || status=$?
[ "$status" -eq 124 ] && echo "start.sh: timed out after $((SECS - RESERVE))s"
exit "$status"
