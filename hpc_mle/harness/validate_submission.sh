#!/bin/sh
# Checks that a submission can be graded. Prints the validator's answer: valid or not, and why.
# It never reports a score. Usage: /home/validate_submission.sh [/home/submission/submission.csv]
exec python3 "${HPC_MLE_HARNESS:-/opt/hpc-mle}/validate.py" "$@"
