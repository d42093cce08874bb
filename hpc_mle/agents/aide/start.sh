#!/usr/bin/env bash
# AIDE (aideml 0.2.2) under the MLE-bench agent contract.
# Builds AIDE's task text from the benchmark instructions (paths mapped to AIDE's workspace: ./input is
# the data, ./working/submission.csv the file AIDE's prompt asks for), then runs our driver
# (run_aide.py) in AIDE's own environment. The driver publishes the best node's submission to
# $SUBMISSION_DIR and its code to $CODE_DIR after every step; AIDE's journal goes to $LOGS_DIR/aide.
# Extra arguments are AIDE `key=value` overrides and win over the ones below.
set -euo pipefail

VENV="${HPC_MLE_VENV:-/opt/venvs/aide}"   # a local venv (hpc-mle scaffolds venv aide) or the image's
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "start.sh: no AIDE environment at $VENV. Build it: hpc-mle scaffolds venv aide (or use containers/aide.def)" >&2
    exit 3
fi
MODEL="${AIDE_CODE_MODEL:-${HPC_MLE_MODEL:-}}"
if [ -z "$MODEL" ]; then
    echo "start.sh: AIDE needs a language model: launch with model=<name> (conf/model), not model=none" >&2
    exit 3
fi
FEEDBACK_MODEL="${AIDE_FEEDBACK_MODEL:-$MODEL}"
AGENT_DIR="${AGENT_DIR:-/home/agent}"
INSTRUCTIONS=/home/instructions.txt   # the harness copy when the contract paths are not mounted (sandbox=none)
[ -f "$INSTRUCTIONS" ] || INSTRUCTIONS="${HPC_MLE_HARNESS:-/opt/hpc-mle}/instructions.txt"
LOGS_DIR="${LOGS_DIR:-/home/logs}"
DATA_DIR="${DATA_DIR:-/home/data}"
STEPS="${STEP_LIMIT:-500}"
SECS="${TIME_LIMIT_SECS:-86400}"
TIME_TEXT="$((SECS / 3600))hrs $((SECS % 3600 / 60))mins $((SECS % 60))secs"
TASK="$AGENT_DIR/aide_task.md"
mkdir -p "$LOGS_DIR/aide" "$AGENT_DIR/workspaces" "${CODE_DIR:-/home/code}" "${SUBMISSION_DIR:-/home/submission}"

{
    sed -e 's#/home/data/description\.md#./input/description.md#g' \
        -e 's#/home/data/#./input/#g' \
        -e 's#/home/submission/submission\.csv#./working/submission.csv#g' \
        "$INSTRUCTIONS"
    echo
    echo "ADDITIONAL NOTES"
    echo "------"
    echo "- Hardware: ${HARDWARE:-a CPU}."
    echo "- Total runtime: you have ${TIME_TEXT} to find your best solution, in at most ${STEPS} steps."
    echo "- Use the time you have; a better validation score is worth more than finishing early."
    echo "- The solution with the best validation metric is graded on the ./working/submission.csv it wrote."
    echo
    echo "COMPETITION INSTRUCTIONS"
    echo "------"
    echo
    cat "$DATA_DIR/description.md"
} > "$TASK"

echo "start.sh: AIDE with $MODEL (feedback $FEEDBACK_MODEL), ${STEPS} steps, ${SECS}s, python $PY"
cd "$AGENT_DIR"
exec "$PY" "$AGENT_DIR/run_aide.py" \
    data_dir="$DATA_DIR" desc_file="$TASK" log_dir="$LOGS_DIR/aide" workspace_dir="$AGENT_DIR/workspaces" \
    exp_name=exp copy_data=False generate_report=False \
    agent.steps="$STEPS" \
    agent.search.max_debug_depth="${AIDE_MAX_DEBUG_DEPTH:-20}" \
    agent.search.debug_prob="${AIDE_DEBUG_PROB:-1}" \
    agent.search.num_drafts="${AIDE_NUM_DRAFTS:-5}" \
    exec.timeout="${AIDE_EXEC_TIMEOUT:-32400}" \
    agent.code.model="$MODEL" agent.code.temp="${AIDE_CODE_TEMP:-0.5}" \
    agent.feedback.model="$FEEDBACK_MODEL" agent.feedback.temp="${AIDE_FEEDBACK_TEMP:-0.5}" \
    "$@"
