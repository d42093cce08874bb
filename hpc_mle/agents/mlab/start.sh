#!/usr/bin/env bash
# MLAgentBench's research agent (MLAB) under the MLE-bench agent contract.
# MLAB works on a "task": benchmarks/<task>/env is copied into its work dir and
# benchmarks/<task>/scripts/research_problem.txt is the prompt. The image links
# benchmarks/mlebench to $AGENT_DIR/mlab-task, which this script fills: the data, the submission
# folder and the validation script as links, the instructions (paths made relative, as the agent
# works in its own copy) as the research problem. Extra arguments go to MLAgentBench.runner.
set -euo pipefail

VENV="${HPC_MLE_VENV:-/opt/venvs/mlab}"
MLAB="${MLAB_DIR:-/opt/mlab/MLAgentBench}"   # the clone (MLAB runs from its checkout)
PY="$VENV/bin/python"
if [ ! -x "$PY" ] || [ ! -d "$MLAB/MLAgentBench" ]; then
    echo "start.sh: no MLAB environment ($PY, $MLAB); use the image built from containers/mlab.def" >&2
    exit 3
fi
if [ -z "${HPC_MLE_MODEL:-}" ]; then
    echo "start.sh: MLAB needs a language model: launch with model=<name> (conf/model)" >&2
    exit 3
fi
AGENT_DIR="${AGENT_DIR:-/home/agent}"
INSTRUCTIONS=/home/instructions.txt   # the harness copy when the contract paths are not mounted (sandbox=none)
[ -f "$INSTRUCTIONS" ] || INSTRUCTIONS="${HPC_MLE_HARNESS:-/opt/hpc-mle}/instructions.txt"
LOGS_DIR="${LOGS_DIR:-/home/logs}"
CODE_DIR="${CODE_DIR:-/home/code}"
SECS="${TIME_LIMIT_SECS:-86400}"
STEPS="${STEP_LIMIT:-2000}"
RESERVE=$(( SECS / 20 < 120 ? SECS / 20 : 120 ))   # left for copying the code out before the runner stops us
TASKDIR="$AGENT_DIR/mlab-task"
WORKDIR="$AGENT_DIR/mlab-workdir"
mkdir -p "$TASKDIR/env" "$TASKDIR/scripts" "$LOGS_DIR/mlab" "$CODE_DIR"

ln -sfn /home/data "$TASKDIR/env/data"
ln -sfn "${SUBMISSION_DIR:-/home/submission}" "$TASKDIR/env/submission"
cp /home/validate_submission.sh "$TASKDIR/env/validate_submission.sh"
{
    sed -e 's#/home/##g' "$INSTRUCTIONS"
    echo
    echo "ADDITIONAL NOTES"
    echo "------"
    echo "- Hardware: ${HARDWARE:-a CPU}."
    echo "- Total runtime: $((SECS / 3600))hrs $((SECS % 3600 / 60))mins $((SECS % 60))secs, at most ${STEPS} steps."
    echo "- Write submission/submission.csv early and improve it."
} > "$TASKDIR/scripts/research_problem.txt"
cp "$TASKDIR/scripts/research_problem.txt" "$TASKDIR/env/instructions.txt"

# MLAB's OpenAI client (openai 0.28) reads OPENAI_API_BASE; the key is the proxy's per-attempt token.
case "${HPC_MLE_PROVIDER:-openai}" in
    anthropic) ;;  # the anthropic client reads ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY itself
    *) export OPENAI_API_BASE="${OPENAI_BASE_URL:-}" ;;
esac

cd "$MLAB"
"$PY" -u -m MLAgentBench.prepare_task mlebench "$PY"
status=0
timeout --signal=TERM --kill-after=30 "$((SECS - RESERVE))" "$PY" -u -m MLAgentBench.runner \
    --python "$PY" --task mlebench --device 0 --log-dir "$LOGS_DIR/mlab" --work-dir "$WORKDIR" \
    --llm-name "$HPC_MLE_MODEL" --edit-script-llm-name "$HPC_MLE_MODEL" --fast-llm-name "$HPC_MLE_MODEL" \
    --max-steps "$STEPS" --agent-max-steps "$STEPS" --max-time "${MLAB_MAX_TIME:-$SECS}" \
    --max-retries "${MLAB_MAX_RETRIES:-10}" --max-tokens "${MLAB_MAX_TOKENS:-16384}" "$@" || status=$?
[ "$status" -eq 124 ] && echo "start.sh: timed out after $((SECS - RESERVE))s"

# The agent's code: every file under 10 MB in its work dir, keeping the folder structure.
if [ -d "$WORKDIR" ]; then
    (cd "$WORKDIR" && find . -type f -size -10M -exec cp --parents {} "$CODE_DIR" \;)
fi
exit "$status"
