#!/bin/sh
# First process inside the sandbox: start the harness helpers, then become the agent.
if [ -n "$HPC_MLE_FORWARD_PORT" ]; then
    python3 "${HPC_MLE_HARNESS:-/opt/hpc-mle}/forward.py" "$HPC_MLE_FORWARD_PORT" "$VALIDATOR_SOCKET" \
        >/dev/null 2>&1 &
fi
exec "$@"
