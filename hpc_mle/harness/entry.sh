#!/bin/sh
# First process inside the sandbox (already the agent's uid): start the harness helpers, then become the agent.
# The forwarder serves the validator (and the LLM proxy, when the attempt has a model) on the sandbox's
# own loopback; it returns once its ports listen, so the agent can connect from its first line.
ports=""
if [ -n "$HPC_MLE_FORWARD_PORT" ]; then
    ports="$HPC_MLE_FORWARD_PORT $VALIDATOR_SOCKET"
fi
if [ -n "$HPC_MLE_LLM_PORT" ] && [ -n "$HPC_MLE_LLM_SOCKET" ]; then
    ports="$ports $HPC_MLE_LLM_PORT $HPC_MLE_LLM_SOCKET"
fi
if [ -n "$ports" ]; then
    # shellcheck disable=SC2086  # word splitting of $ports is intended
    python3 "${HPC_MLE_HARNESS:-/opt/hpc-mle}/forward.py" $ports >/dev/null 2>&1 || true
fi
# Everything up to here ran on the runtime's stderr, which the harness keeps for itself: this line tells it
# the sandbox started (a failure before it is the infrastructure's, not the agent's). From here the agent's
# stderr joins its stdout in the agent log, so it can never write to, or forge, the harness's file.
if [ -n "$HPC_MLE_STARTED" ]; then
    printf '%s\n' "$HPC_MLE_STARTED" >&2
fi
exec "$@" 2>&1
